//! Google's HTML My Activity (EXPORTS.md §1.1): the same records as the
//! JSON form, laid out as Takeout writes them by default (one
//! `div.outer-cell` per record), with `&nbsp;`/`\xa0`, `&emsp;`, entities
//! and the date forms of the export's era and language.

use serde_json::Value;

use crate::util::{days_from_civil, tm};
use crate::Language;

/// How the dates of a file are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DateForm {
    /// `Jun 23, 2015, 2:43:45 PM` (old exports, UTC).
    Bare,
    /// `Jan 22, 2020, 8:34:00 PM UTC` (about 2018–2020).
    Utc,
    /// The zone of the export moment, its offset on every date
    /// (`Aug 25, 2020, 5:06:44 PM PDT`).
    Zone(&'static str, i32),
}

/// Zones a generated export may be in, with offsets in minutes.
pub(crate) const ZONES: [(&str, i32); 4] = [("PDT", -420), ("CET", 60), ("BST", 60), ("EST", -300)];

const EN_MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const NL_MONTHS: [&str; 12] = [
    "jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec",
];

/// The page around the records.
pub(crate) const PAGE_HEAD: &[u8] = b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>.outer-cell{margin:4px} .header-cell{font-weight:bold}</style><title>My Activity</title></head><body><div class=\"mdl-grid\">";
/// The end of the page.
pub(crate) const PAGE_TAIL: &[u8] = b"</div></body></html>\n";

fn esc(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

/// Epoch seconds of `YYYY-MM-DDTHH:MM:SS[.f]Z`.
fn secs_of(iso: &str) -> Option<i64> {
    let n = |a: usize, b: usize| iso.get(a..b)?.parse::<i64>().ok();
    let days = days_from_civil(
        n(0, 4)?,
        u32::try_from(n(5, 7)?).ok()?,
        u32::try_from(n(8, 10)?).ok()?,
    );
    Some(days * 86_400 + n(11, 13)? * 3600 + n(14, 16)? * 60 + n(17, 19)?)
}

/// The date of a record as the HTML form writes it.
pub(crate) fn date_text(iso: &str, form: DateForm, lang: Language) -> String {
    let secs = secs_of(iso).unwrap_or(0);
    let (zone, offset) = match form {
        DateForm::Bare => ("", 0),
        DateForm::Utc => ("UTC", 0),
        DateForm::Zone(z, off) => (z, off),
    };
    let t = tm((secs + i64::from(offset) * 60) * 1000);
    let month = t.month.clamp(1, 12) as usize - 1;
    let tail = if zone.is_empty() {
        String::new()
    } else {
        format!(" {zone}")
    };
    match lang {
        Language::Nl => format!(
            "{} {} {}, {:02}:{:02}:{:02}{tail}",
            t.day, NL_MONTHS[month], t.year, t.hour, t.minute, t.second
        ),
        _ => {
            let (h12, ampm) = match t.hour {
                0 => (12, "AM"),
                h @ 1..=11 => (h, "AM"),
                12 => (12, "PM"),
                h => (h - 12, "PM"),
            };
            // Newer exports put a narrow no-break space before AM/PM.
            let sp = if matches!(form, DateForm::Zone(..)) {
                '\u{202f}'
            } else {
                ' '
            };
            format!(
                "{} {}, {}, {}:{:02}:{:02}{sp}{ampm}{tail}",
                EN_MONTHS[month], t.day, t.year, h12, t.minute, t.second
            )
        }
    }
}

const VERBS: [&str; 6] = [
    "Watched ",
    "Searched for ",
    "Visited ",
    "Said ",
    "Subscribed to ",
    "Viewed ",
];

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// One record as a `div.outer-cell`.
pub(crate) fn outer_cell(v: &Value, form: DateForm, lang: Language) -> Vec<u8> {
    let mut h = String::with_capacity(1024);
    h.push_str("<div class=\"outer-cell mdl-cell mdl-cell--12-col mdl-shadow--2dp\"><div class=\"mdl-grid\">");
    if let Some(header) = str_of(v, "header") {
        h.push_str("<div class=\"header-cell mdl-cell mdl-cell--12-col\"><p class=\"mdl-typography--title\">");
        esc(header, &mut h);
        h.push_str("<br></p></div>");
    }
    h.push_str("<div class=\"content-cell mdl-cell mdl-cell--6-col mdl-typography--body-1\">");
    let title = str_of(v, "title").unwrap_or_default();
    match str_of(v, "titleUrl") {
        Some(url) => {
            let verb = VERBS.iter().find(|p| title.starts_with(*p));
            let (lead, rest) = match verb {
                Some(p) => (p.trim_end(), title.get(p.len()..).unwrap_or_default()),
                None => ("", title),
            };
            if !lead.is_empty() {
                esc(lead, &mut h);
                h.push_str("&nbsp;");
            }
            h.push_str("<a href=\"");
            esc(url, &mut h);
            h.push_str("\">");
            esc(rest, &mut h);
            h.push_str("</a>");
        }
        None => esc(title, &mut h),
    }
    h.push_str("<br>");
    for s in v
        .get("subtitles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = str_of(s, "name").unwrap_or_default();
        match str_of(s, "url") {
            Some(url) => {
                h.push_str("<a href=\"");
                esc(url, &mut h);
                h.push_str("\">");
                esc(name, &mut h);
                h.push_str("</a>");
            }
            None => esc(name, &mut h),
        }
        h.push_str("<br>");
    }
    esc(
        &date_text(str_of(v, "time").unwrap_or_default(), form, lang),
        &mut h,
    );
    h.push_str("</div><div class=\"content-cell mdl-cell mdl-cell--6-col mdl-typography--body-1 mdl-typography--text-right\"></div>");
    h.push_str("<div class=\"content-cell mdl-cell mdl-cell--12-col mdl-typography--caption\"><b>Products:</b><br>");
    for p in v
        .get("products")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        h.push_str("&emsp;");
        esc(p.as_str().unwrap_or_default(), &mut h);
        h.push_str("<br>");
    }
    if let Some(list) = v.get("locationInfos").and_then(Value::as_array) {
        h.push_str("<b>Locations:</b><br>");
        for l in list {
            h.push_str("&emsp;");
            let name = str_of(l, "name").unwrap_or_default();
            match (name.split_once(' '), str_of(l, "url")) {
                (Some((first, rest)), Some(url)) => {
                    esc(first, &mut h);
                    h.push_str(" <a href=\"");
                    esc(url, &mut h);
                    h.push_str("\">");
                    esc(rest, &mut h);
                    h.push_str("</a>");
                }
                _ => esc(name, &mut h),
            }
            if let Some(source) = str_of(l, "source") {
                h.push_str(" - ");
                esc(source, &mut h);
            }
            h.push_str("<br>");
        }
    }
    if let Some(list) = v.get("details").and_then(Value::as_array) {
        h.push_str("<b>Details:</b><br>");
        for d in list {
            h.push('\u{2003}');
            esc(str_of(d, "name").unwrap_or_default(), &mut h);
            h.push_str("<br>");
        }
    }
    if let Some(list) = v.get("activityControls").and_then(Value::as_array) {
        h.push_str("<b>Why is this here?</b><br>&emsp;This activity was saved to your Google Account because the following settings were on:\u{a0}");
        let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        esc(&names.join(", "), &mut h);
        h.push_str(".&nbsp;You can control these settings &nbsp;<a href=\"https://myaccount.google.com/activitycontrols\">here</a>.");
    }
    h.push_str("</div></div></div>");
    h.into_bytes()
}
