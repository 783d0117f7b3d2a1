//! Google Takeout (EXPORTS.md §1): the plan of the export's files.
//!
//! `records.rs` writes the records of My Activity, YouTube and the
//! Assistant; `photos.rs` the Google Photos library with its sidecars.

mod photos;
mod records;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::gen::{MediaKind, Planned, StreamSpec};
use crate::google_html::{self, DateForm};
use crate::util::{
    alnum, ascii_words, digits, iso_ms, iso_s, json_text, pick, sub_seed, words, MONTHS, NAMES,
};
use crate::{ActivityForm, Ctx, Era, Language};

use photos::photos;
#[cfg(test)]
use photos::sidecar_name;
use records::{
    array_spec, assistant_record, audio_name, gitem, search_record, watch_record,
    yt_activity_record, yt_search_record, G,
};

/// Folder and file names of the account language (EXPORTS.md §0).
struct Names {
    my_activity: &'static str,
    my_activity_file: &'static str,
    search: &'static str,
    youtube: &'static str,
    history: &'static str,
    watch: &'static str,
    search_history: &'static str,
}

fn names(lang: Language) -> Names {
    match lang {
        Language::En => Names {
            my_activity: "My Activity",
            my_activity_file: "MyActivity",
            search: "Search",
            youtube: "YouTube and YouTube Music",
            history: "history",
            watch: "watch-history",
            search_history: "search-history",
        },
        Language::De => Names {
            my_activity: "Meine Aktivitäten",
            my_activity_file: "MeineAktivitäten",
            search: "Suche",
            youtube: "YouTube und YouTube Music",
            history: "Verlauf",
            watch: "Wiedergabeverlauf",
            search_history: "Suchverlauf",
        },
        // Dutch My Activity names are not known (EXPORTS.md): English.
        Language::Nl => Names {
            my_activity: "My Activity",
            my_activity_file: "MyActivity",
            search: "Search",
            youtube: "YouTube en YouTube Music",
            history: "geschiedenis",
            watch: "kijkgeschiedenis",
            search_history: "zoekgeschiedenis",
        },
    }
}

/// The date form of the export's HTML files, chosen by the seed (seed % 3:
/// no zone, UTC, a zone abbreviation): the three of EXPORTS.md §1.1.
fn date_form(ctx: &Ctx) -> DateForm {
    match ctx.seed % 3 {
        0 => DateForm::Bare,
        1 => DateForm::Utc,
        _ => {
            let (z, off) = google_html::ZONES[(ctx.seed / 3 % 4) as usize];
            DateForm::Zone(z, off)
        }
    }
}

/// A My Activity-shaped file at `{path}.json` or `{path}.html`, with the
/// same records in either form.
fn activity_file(
    ctx: &Ctx,
    path: &str,
    label: &str,
    budget: u64,
    presets: Vec<Vec<u8>>,
    f: fn(&mut StdRng, u64, i64) -> Value,
) -> Planned {
    match ctx.activity {
        ActivityForm::Json => Planned::stream(
            format!("{path}.json"),
            array_spec(ctx, label, budget, presets, gitem(f, 0)),
        ),
        ActivityForm::Html => {
            let (form, lang) = (date_form(ctx), ctx.language);
            let twin = crate::gen::Twin {
                item: gitem(f, 0),
                prefix: 1,
                separator: 2,
                presets: presets.iter().map(|p| p.len() as u64).collect(),
            };
            let presets = presets
                .iter()
                .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
                .map(|v| google_html::outer_cell(&v, form, lang))
                .collect();
            let item: crate::gen::ItemFn =
                Arc::new(move |rng, i, t| google_html::outer_cell(&f(rng, i, t), form, lang));
            // Item count and times as the JSON form's: the budget counts
            // the JSON bytes of the same items.
            let mut spec = ctx.spec(
                label,
                budget,
                google_html::PAGE_HEAD.to_vec(),
                Vec::new(),
                google_html::PAGE_TAIL.to_vec(),
                presets,
                item,
                600,
            );
            spec.twin = Some(twin);
            Planned::stream(format!("{path}.html"), spec)
        }
    }
}

pub(crate) fn plan(ctx: &Ctx) -> Vec<Planned> {
    let legacy = ctx.era == Era::Legacy;
    let t = ctx.text_budget as f64;
    let share = |w: f64| (t * w) as u64;
    let m = ctx.media_budget as f64;
    let mut out = Vec::new();

    out.push(Planned::bytes(
        "Takeout/archive_browser.html",
        b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Archive Overview</title></head><body><h1>Your Google data archive</h1><p>This archive was created by Google Takeout.</p></body></html>\n".to_vec(),
    ));

    // Chrome (§1.6).
    let chrome_name = if legacy {
        "BrowserHistory.json"
    } else {
        "History.json"
    };
    let chrome = ctx.spec(
        "chrome",
        share(0.15),
        b"{\n  \"Browser History\": [\n    ".to_vec(),
        b",\n    ".to_vec(),
        b"\n  ]\n}\n".to_vec(),
        Vec::new(),
        Arc::new(move |rng, i, t| {
            let site = ascii_words(rng, 1, 1);
            let mut v = json!({"favicon_url": format!("https://{site}.example/favicon.ico"),
                "page_transition": if i % 3 == 0 { "TYPED" } else { "LINK" },
                "title": words(rng, 2, 5), "ptoken": {}, "url": format!("https://{site}.example/{}", ascii_words(rng, 1, 2).replace(' ', "/")),
                "client_id": format!("{}==", alnum(rng, 22)), "time_usec": t * 1000 + (i as i64 % 1000)});
            if !legacy && i % 4 == 1 {
                if let Some(o) = v.as_object_mut() {
                    o.shift_remove("page_transition");
                    o.insert("page_transition_qualifier".into(), json!("CLIENT_REDIRECT"));
                }
            }
            json_text(&v, G, 2)
        }),
        260,
    );
    out.push(Planned::stream(
        format!("Takeout/Chrome/{chrome_name}"),
        chrome,
    ));

    // Contacts (§1.9).
    let vcard: crate::gen::ItemFn = Arc::new(|rng, i, _t| {
        let name = pick(rng, NAMES);
        let email = format!(
            "{}{}@example.org",
            name.split(' ').next().unwrap_or("x").to_lowercase(),
            i
        );
        format!(
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:{name}\r\nN:{};;;\r\nEMAIL;TYPE=INTERNET:{email}\r\nTEL;TYPE=CELL:+41 79 {} {} {}\r\nNOTE:{}\r\nCATEGORIES:myContacts\r\nEND:VCARD\r\n",
            name.replace(' ', ";"),
            digits(rng, 3),
            digits(rng, 2),
            digits(rng, 2),
            words(rng, 2, 6)
        )
        .into_bytes()
    });
    out.push(Planned::media(
        "Takeout/Contacts/My Contacts/Ana Example.jpg",
        MediaKind::Jpeg,
        (m * 0.002).clamp(600.0, 40_000.0) as u64,
        sub_seed(ctx.seed, "contact-photo"),
    ));
    out.push(Planned::stream(
        "Takeout/Contacts/My Contacts/My Contacts.vcf",
        ctx.spec(
            "contacts-my",
            share(0.01),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            vcard.clone(),
            200,
        ),
    ));
    out.push(Planned::stream(
        "Takeout/Contacts/All Contacts/All Contacts.vcf",
        ctx.spec(
            "contacts-all",
            share(0.02),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            vcard,
            200,
        ),
    ));

    // Google Photos (§1.8).
    photos(ctx, m * 0.9, &mut out);

    // Location History (§1.7).
    let loc_dir = if legacy {
        "Takeout/Location History"
    } else {
        "Takeout/Location History (Timeline)"
    };
    let cutover = 1_641_000_000_000i64; // ~Jan 2022
    let records = ctx.spec(
        "location-records",
        share(0.2),
        b"{\n  \"locations\": [".to_vec(),
        b", ".to_vec(),
        b"]\n}\n".to_vec(),
        Vec::new(),
        Arc::new(move |rng, _i, t| {
            let lat = 473_000_000 + rng.gen_range(0..200_000i64);
            let lng = 85_000_000 + rng.gen_range(0..200_000i64);
            let source = pick(rng, &["WIFI", "CELL", "GPS", "UNKNOWN", "wifi"]);
            let mut v = json!({"latitudeE7": lat, "longitudeE7": lng, "accuracy": rng.gen_range(3..60),
                "source": source, "deviceTag": -1_234_567_890i64, "platformType": "ANDROID"});
            if let Some(o) = v.as_object_mut() {
                if legacy || t < cutover {
                    o.insert("timestampMs".into(), json!(t.to_string()));
                } else {
                    o.insert("timestamp".into(), json!(iso_ms(t)));
                }
                if rng.gen_bool(0.2) {
                    o.insert("activity".into(), json!([{"timestamp": iso_ms(t), "activity": [{"type": "STILL", "confidence": 80}]}]));
                }
            }
            json_text(&v, G, 2)
        }),
        250,
    );
    out.push(Planned::stream(format!("{loc_dir}/Records.json"), records));
    out.push(Planned::bytes(
        format!("{loc_dir}/Settings.json"),
        json_text(&json!({"createdTime": "2015-03-01T10:00:00.000Z", "historyEnabled": true, "deviceSettings": []}), G, 0),
    ));
    let year = if legacy { 2020 } else { 2021 };
    for (k, month) in [5u32, 6, 7].iter().enumerate() {
        let month_name = MONTHS.get((*month - 1) as usize).copied().unwrap_or("JUNE");
        let label = format!("semantic-{year}-{month}");
        let start = crate::util::days_from_civil(year, *month, 1) * 86_400_000;
        let spec = StreamSpec {
            t_end: start + 28 * 86_400_000,
            t_step: 3_600_000 * 3,
            t_span: 28 * 86_400_000,
            ..ctx.spec(
                &label,
                share(0.02),
                b"{\n  \"timelineObjects\": [".to_vec(),
                b", ".to_vec(),
                b"]\n}\n".to_vec(),
                Vec::new(),
                Arc::new(|rng, i, t| {
                    let v = if i % 2 == 0 {
                        json!({"placeVisit": {"location": {"latitudeE7": 473_769_000 + rng.gen_range(0..9999), "longitudeE7": 85_417_000,
                            "placeId": format!("ChIJ{}", alnum(rng, 23)), "name": words(rng, 1, 3), "address": "1 Sample St"},
                            "duration": {"startTimestamp": iso_s(t), "endTimestamp": iso_s(t + 1_800_000)}, "placeConfidence": "HIGH_CONFIDENCE"}})
                    } else {
                        json!({"activitySegment": {"startLocation": {"latitudeE7": 473_769_000, "longitudeE7": 85_417_000},
                            "endLocation": {"latitudeE7": 473_869_000, "longitudeE7": 85_517_000},
                            "duration": {"startTimestamp": iso_s(t), "endTimestamp": iso_s(t + 900_000)},
                            "distance": rng.gen_range(100..9000), "activityType": "WALKING"}})
                    };
                    json_text(&v, G, 2)
                }),
                1,
            )
        };
        let _ = k;
        out.push(Planned::stream(
            format!("{loc_dir}/Semantic Location History/{year}/{year}_{month_name}.json"),
            spec,
        ));
    }

    // Mail (§1.10).
    let mbox = ctx.spec(
        "mail",
        share(0.06),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Arc::new(|rng, i, t| {
            let from = pick(rng, NAMES);
            let labels = pick(rng, &["Inbox", "Sent", "Category Promotions", "Inbox,Important", "Spam", "Trash", "Chat"]);
            format!(
                "From {}@xxx {}\r\nX-GM-THRID: {}\r\nX-Gmail-Labels: {labels}\r\nFrom: {from} <{}@example.org>\r\nTo: jo@example.org\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{}@mail.example.org>\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n\r\n{}\r\n\r\n",
                1_600_000_000_000_000_000u64 + i,
                crate::util::mbox_date(t),
                1_700_000_000_000_000_000u64 + i / 3,
                from.split(' ').next().unwrap_or("x").to_lowercase(),
                words(rng, 2, 6),
                crate::util::rfc5322(t),
                alnum(rng, 16),
                words(rng, 10, 60)
            )
            .into_bytes()
        }),
        2000,
    );
    out.push(Planned::stream(
        "Takeout/Mail/All mail Including Spam and Trash.mbox",
        mbox,
    ));

    // My Activity (§1.1–1.4), YouTube history (§1.5): JSON or HTML, in the
    // account language.
    let nm = names(ctx.language);
    let activity = format!("Takeout/{}", nm.my_activity);
    assistant(ctx, share(0.05), m * 0.1, &mut out);
    out.push(activity_file(
        ctx,
        &format!("{activity}/{}/{}", nm.search, nm.my_activity_file),
        "activity-search",
        share(0.17),
        Vec::new(),
        search_record,
    ));
    out.push(activity_file(
        ctx,
        &format!("{activity}/YouTube/{}", nm.my_activity_file),
        "activity-youtube",
        share(0.1),
        Vec::new(),
        yt_activity_record,
    ));
    let yt_dir = if legacy {
        "Takeout/YouTube".to_owned()
    } else {
        format!("Takeout/{}", nm.youtube)
    };
    let watch_path = format!("{yt_dir}/{}/{}", nm.history, nm.watch);
    if ctx.activity == ActivityForm::Html {
        out.push(activity_file(
            ctx,
            &watch_path,
            "youtube-watch",
            share(0.14),
            Vec::new(),
            watch_record,
        ));
    } else {
        let mut watch = array_spec(
            ctx,
            "youtube-watch",
            share(0.14),
            Vec::new(),
            gitem(watch_record, 0),
        );
        if legacy {
            // Items from 2017 and before: {"snippet": {...}}; written last.
            let mut rng = StdRng::seed_from_u64(sub_seed(ctx.seed, "youtube-old"));
            let old: Vec<u8> = (0..3)
                .flat_map(|k| {
                    let v = json!({"snippet": {"title": words(&mut rng, 2, 5), "publishedAt": iso_ms(1_450_000_000_000 - k * 86_400_000),
                        "resourceId": {"kind": "youtube#video", "videoId": alnum(&mut rng, 11)}}});
                    let mut b = b", ".to_vec();
                    b.extend(json_text(&v, G, 0));
                    b
                })
                .collect();
            let mut suffix = old;
            suffix.extend_from_slice(b"]");
            watch.suffix = suffix;
        }
        out.push(Planned::stream(format!("{watch_path}.json"), watch));
    }
    out.push(activity_file(
        ctx,
        &format!("{yt_dir}/{}/{}", nm.history, nm.search_history),
        "youtube-search",
        share(0.05),
        Vec::new(),
        yt_search_record,
    ));
    out
}

/// My Activity › Assistant with MP3 recordings beside it.
fn assistant(ctx: &Ctx, text: u64, media: f64, out: &mut Vec<Planned>) {
    let nm = names(ctx.language);
    let dir = format!("Takeout/{}/Assistant", nm.my_activity);
    let mut rng = StdRng::seed_from_u64(sub_seed(ctx.seed, "assistant"));
    let n_audio = ((media / 200_000.0) as u64).clamp(2, 2000);
    let audio_size = ((media / n_audio as f64) as u64).max(1500);
    let mut presets = Vec::new();
    let mut t = ctx.export_ms - 86_400_000;
    for i in 0..n_audio {
        t -= rng.gen_range(3_600_000..40 * 86_400_000);
        let name = audio_name(t);
        let v = json!({"header": "Assistant", "title": format!("Said {}", words(&mut rng, 2, 6)),
            "time": iso_ms(t), "products": ["Assistant"], "audioFiles": [name],
            "activityControls": ["Web & App Activity", "Voice & Audio Activity"]});
        presets.push(json_text(&v, G, 0));
        let size = audio_size / 2 + rng.gen_range(0..audio_size.max(2));
        out.push(Planned::media(
            format!("{dir}/{name}"),
            MediaKind::Mp3,
            size,
            sub_seed(ctx.seed, &format!("mp3-{i}")),
        ));
    }
    let mut file = activity_file(
        ctx,
        &format!("{dir}/{}", nm.my_activity_file),
        "activity-assistant",
        text,
        presets,
        assistant_record,
    );
    // Text-only records continue back in time from the last recording.
    if let Some(spec) = file.spec_mut() {
        spec.t_end = t - 86_400_000;
    }
    out.push(file);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_names() {
        assert_eq!(sidecar_name("IMG_1.jpg", None, true), "IMG_1.jpg.json");
        assert_eq!(
            sidecar_name("IMG_1.jpg", Some(1), true),
            "IMG_1.jpg(1).json"
        );
        assert_eq!(
            sidecar_name("IMG_1.jpg", None, false),
            "IMG_1.jpg.supplemental-metadata.json"
        );
        assert_eq!(
            sidecar_name("IMG_1.jpg", Some(1), false),
            "IMG_1.jpg.supplemental-metadata(1).json"
        );
        let long = "PXL_20230630_000007123.NIGHT.PORTRAIT.jpg";
        let s = sidecar_name(long, None, false);
        assert_eq!(s.chars().count(), 51, "{s}");
        assert!(s.starts_with(&format!("{long}.supp")));
        assert_eq!(
            audio_name(1_551_769_929_331),
            "2019-03-05_07_12_09_331_UTC.mp3"
        );
    }
}
