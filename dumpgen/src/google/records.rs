//! The records of Google's JSON files: My Activity (search, YouTube,
//! Assistant), YouTube histories, and their time texts.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use crate::gen::StreamSpec;
use crate::util::{alnum, ascii_words, iso_ms, iso_s, json_text, pick, words, JsonStyle, NAMES};
use crate::Ctx;

pub(super) const G: JsonStyle = JsonStyle::Google;

/// Time text of a My Activity record: 0, 3 or 6 fraction digits.
pub(super) fn activity_time(i: u64, t: i64) -> String {
    if i % 7 == 3 {
        let ms = iso_ms(t);
        format!("{}{:03}Z", ms.trim_end_matches('Z'), i % 1000)
    } else if i % 5 == 4 {
        iso_s(t)
    } else {
        iso_ms(t)
    }
}

/// A JSON array file written the Google way.
pub(super) fn array_spec(
    ctx: &Ctx,
    label: &str,
    budget: u64,
    presets: Vec<Vec<u8>>,
    item: crate::gen::ItemFn,
) -> StreamSpec {
    ctx.spec(
        label,
        budget,
        b"[".to_vec(),
        b", ".to_vec(),
        b"]".to_vec(),
        presets,
        item,
        600,
    )
}

pub(super) fn search_record(rng: &mut StdRng, i: u64, t: i64) -> Value {
    let q = words(rng, 1, 4);
    let time = activity_time(i, t);
    if rng.gen_bool(0.25) {
        let site = ascii_words(rng, 1, 1);
        json!({"header": "Search", "title": format!("Visited {site} – guide"),
            "titleUrl": format!("https://www.google.com/url?q=https://{site}.example/&usg=AOvVaw{}", alnum(rng, 22)),
            "time": time, "products": ["Search"], "activityControls": ["Web & App Activity"]})
    } else if rng.gen_bool(0.3) {
        json!({"header": "Search", "title": format!("Searched for {q}"),
            "titleUrl": format!("https://www.google.com/search?q={}", q.replace(' ', "+")),
            "time": time, "products": ["Search"], "activityControls": ["Web & App Activity"],
            "locationInfos": [{"name": "At this general area", "url": "https://www.google.com/maps/@?api=1&map_action=map&center=47.37,8.54", "source": "From your device"}]})
    } else {
        json!({"header": "Search", "title": format!("Searched for {q}"),
            "titleUrl": format!("https://www.google.com/search?q={}", q.replace(' ', "+")),
            "time": time, "products": ["Search"], "activityControls": ["Web & App Activity"]})
    }
}

pub(super) fn watch_record(rng: &mut StdRng, i: u64, t: i64) -> Value {
    let title = words(rng, 2, 6);
    let channel = pick(rng, NAMES);
    let time = activity_time(i, t);
    let header = if rng.gen_bool(0.15) {
        "YouTube Music"
    } else {
        "YouTube"
    };
    if rng.gen_bool(0.05) {
        return json!({"header": "YouTube", "title": "Watched a video that has been removed", "time": time,
            "products": ["YouTube"], "activityControls": ["YouTube watch history"]});
    }
    let mut v = json!({"header": header, "title": format!("Watched {title}"),
        "titleUrl": format!("https://www.youtube.com/watch?v={}", alnum(rng, 11)),
        "subtitles": [{"name": channel, "url": format!("https://www.youtube.com/channel/UC{}", alnum(rng, 22))}],
        "time": time, "products": ["YouTube"], "activityControls": ["YouTube watch history"]});
    if rng.gen_bool(0.08) {
        if let Some(o) = v.as_object_mut() {
            o.insert("details".into(), json!([{"name": "From Google Ads"}]));
        }
    }
    v
}

pub(super) fn yt_search_record(rng: &mut StdRng, i: u64, t: i64) -> Value {
    let q = words(rng, 1, 4);
    json!({"header": "YouTube", "title": format!("Searched for {q}"),
        "titleUrl": format!("https://www.youtube.com/results?search_query={}", q.replace(' ', "+")),
        "time": activity_time(i, t), "products": ["YouTube"], "activityControls": ["YouTube search history"]})
}

pub(super) fn yt_activity_record(rng: &mut StdRng, i: u64, t: i64) -> Value {
    match rng.gen_range(0..10) {
        0..=5 => watch_record(rng, i, t),
        6..=8 => yt_search_record(rng, i, t),
        _ => {
            let channel = pick(rng, NAMES);
            json!({"header": "YouTube", "title": format!("Subscribed to {channel}"),
                "titleUrl": format!("https://www.youtube.com/channel/UC{}", alnum(rng, 22)),
                "time": activity_time(i, t), "products": ["YouTube"]})
        }
    }
}

pub(super) fn audio_name(t: i64) -> String {
    let iso = iso_ms(t);
    // 2019-03-05T07:12:09.331Z → 2019-03-05_07_12_09_331_UTC.mp3
    let s = iso.trim_end_matches('Z').replace(['T', ':', '.'], "_");
    format!("{s}_UTC.mp3")
}

pub(super) fn gitem(f: fn(&mut StdRng, u64, i64) -> Value, indent: usize) -> crate::gen::ItemFn {
    Arc::new(move |rng, i, t| json_text(&f(rng, i, t), G, indent))
}

pub(super) fn assistant_record(rng: &mut StdRng, i: u64, t: i64) -> Value {
    json!({"header": "Assistant", "title": format!("Said {}", words(rng, 2, 6)),
        "time": activity_time(i, t), "products": ["Assistant"]})
}
