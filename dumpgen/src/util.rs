//! Small helpers shared by the generators: dates, JSON styles, words.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;

pub use protocol::date::{civil_from_days, days_from_civil};

/// Broken-down UTC time of epoch milliseconds.
pub struct Tm {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub milli: u32,
}

pub fn tm(ms: i64) -> Tm {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Tm {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        milli,
    }
}

/// `2021-12-13T03:04:05.007Z`.
pub fn iso_ms(ms: i64) -> String {
    let t = tm(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.milli
    )
}

/// `2021-12-13T03:04:05Z`.
pub fn iso_s(ms: i64) -> String {
    let t = tm(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `2021-12-13`.
pub fn date_only(ms: i64) -> String {
    let t = tm(ms);
    format!("{:04}-{:02}-{:02}", t.year, t.month, t.day)
}

pub const MONTHS: [&str; 12] = [
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "MAY",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
];

const MON3: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn month_index(month: u32) -> usize {
    (month.clamp(1, 12) - 1) as usize
}

/// Google Photos' `formatted`: `Jun 30, 2023, 12:22:33 PM UTC`.
pub fn google_formatted(ms: i64) -> String {
    let t = tm(ms);
    let (h12, ampm) = match t.hour {
        0 => (12, "AM"),
        1..=11 => (t.hour, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    format!(
        "{} {}, {}, {}:{:02}:{:02} {} UTC",
        MON3.get(month_index(t.month)).copied().unwrap_or("Jan"),
        t.day,
        t.year,
        h12,
        t.minute,
        t.second,
        ampm
    )
}

/// Audible's `14-MAR-2022`.
pub fn dd_mon_yyyy(ms: i64) -> String {
    let t = tm(ms);
    let mon = MON3
        .get(month_index(t.month))
        .copied()
        .unwrap_or("Jan")
        .to_ascii_uppercase();
    format!("{:02}-{}-{:04}", t.day, mon, t.year)
}

/// Amazon.it 2021: `11/11/2021 22:32:48 UTC`.
pub fn us_datetime(ms: i64) -> String {
    let t = tm(ms);
    format!(
        "{:02}/{:02}/{:04} {:02}:{:02}:{:02} UTC",
        t.month, t.day, t.year, t.hour, t.minute, t.second
    )
}

/// RFC 5322 date: `Mon, 01 Jan 2024 00:00:00 +0000`.
pub fn rfc5322(ms: i64) -> String {
    let t = tm(ms);
    let days = ms.div_euclid(86_400_000);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        wd.get(days.rem_euclid(7) as usize)
            .copied()
            .unwrap_or("Mon"),
        t.day,
        MON3.get(month_index(t.month)).copied().unwrap_or("Jan"),
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

/// The mbox separator date: `Mon Jan 01 00:00:00 +0000 2024`.
pub fn mbox_date(ms: i64) -> String {
    let t = tm(ms);
    let days = ms.div_euclid(86_400_000);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} +0000 {:04}",
        wd.get(days.rem_euclid(7) as usize)
            .copied()
            .unwrap_or("Mon"),
        MON3.get(month_index(t.month)).copied().unwrap_or("Jan"),
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.year
    )
}

/// How a provider writes its JSON text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonStyle {
    /// Google: pretty, 2 spaces, `=`, `&`, `'` escaped as `\u003d`, `\u0026`,
    /// `\u0027`.
    Google,
    /// Facebook: pretty, 2 spaces, every UTF-8 byte of a non-ASCII character
    /// written as its own `\u00XX` (mojibake).
    Facebook,
}

/// Serializes a value in a provider's style, indented by `indent` extra
/// levels (2 spaces each) after the first line.
pub fn json_text(value: &Value, style: JsonStyle, indent: usize) -> Vec<u8> {
    let plain = serde_json::to_vec_pretty(value).unwrap_or_default();
    let pad = "  ".repeat(indent);
    let mut out = Vec::with_capacity(plain.len() + plain.len() / 8);
    for &b in &plain {
        match (style, b) {
            (_, b'\n') => {
                out.push(b'\n');
                out.extend_from_slice(pad.as_bytes());
            }
            (JsonStyle::Google, b'=') => out.extend_from_slice(b"\\u003d"),
            (JsonStyle::Google, b'&') => out.extend_from_slice(b"\\u0026"),
            (JsonStyle::Google, b'\'') => out.extend_from_slice(b"\\u0027"),
            (JsonStyle::Facebook, b) if b >= 0x80 => {
                out.extend_from_slice(format!("\\u00{b:02x}").as_bytes());
            }
            _ => out.push(b),
        }
    }
    out
}

pub const WORDS: &[&str] = &[
    "trail",
    "running",
    "shoes",
    "weather",
    "zurich",
    "recipe",
    "lentil",
    "soup",
    "bike",
    "repair",
    "cedar",
    "birdhouse",
    "train",
    "tickets",
    "lisbon",
    "museum",
    "opening",
    "hours",
    "rust",
    "async",
    "tokio",
    "garden",
    "tomato",
    "pruning",
    "piano",
    "chords",
    "jazz",
    "history",
    "coffee",
    "grinder",
    "review",
    "camping",
    "tent",
    "mountain",
    "lake",
    "sunset",
    "café",
    "crème",
    "brûlée",
    "naïve",
    "façade",
    "Zürich",
    "São",
    "Paulo",
    "🎉",
    "❤",
];

pub const NAMES: &[&str] = &[
    "Sam Sample",
    "Ana Example",
    "Jo Example",
    "Léa Muster",
    "Zoë Placeholder",
    "Max Mustermann",
    "Chloé Démo",
    "Ren Test",
    "Kai Fictive",
    "Ola Nordmann",
];

pub fn words(rng: &mut StdRng, min: usize, max: usize) -> String {
    let n = rng.gen_range(min..=max);
    let mut out = String::new();
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(pick(rng, WORDS));
    }
    out
}

pub fn ascii_words(rng: &mut StdRng, min: usize, max: usize) -> String {
    let n = rng.gen_range(min..=max);
    let mut out = String::new();
    let mut added = 0;
    while added < n {
        let w = pick(rng, WORDS);
        if w.is_ascii() {
            if added > 0 {
                out.push(' ');
            }
            out.push_str(w);
            added += 1;
        }
    }
    out
}

pub fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list.get(rng.gen_range(0..list.len().max(1)))
        .copied()
        .unwrap_or("x")
}

pub fn alnum(rng: &mut StdRng, n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| {
            char::from(
                CHARS
                    .get(rng.gen_range(0..CHARS.len()))
                    .copied()
                    .unwrap_or(b'x'),
            )
        })
        .collect()
}

pub fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// A seed for one file, independent of generation order.
pub fn sub_seed(seed: u64, label: &str) -> u64 {
    // FNV-1a over the label, mixed with the seed (splitmix64 finaliser).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 3, 1), 19_783);
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
        assert_eq!(iso_ms(1_617_404_690_134), "2021-04-02T23:04:50.134Z");
        assert_eq!(iso_s(0), "1970-01-01T00:00:00Z");
        assert_eq!(dd_mon_yyyy(1_647_216_000_000), "14-MAR-2022");
        assert_eq!(us_datetime(1_636_669_968_000), "11/11/2021 22:32:48 UTC");
        assert_eq!(
            rfc5322(1_704_067_200_000),
            "Mon, 01 Jan 2024 00:00:00 +0000"
        );
        assert_eq!(
            google_formatted(1_688_127_753_000),
            "Jun 30, 2023, 12:22:33 PM UTC"
        );
    }

    #[test]
    fn styles() {
        let v = serde_json::json!({"u": "a=b&c'd", "t": "Café"});
        let g = String::from_utf8(json_text(&v, JsonStyle::Google, 0)).unwrap();
        assert!(g.contains("a\\u003db\\u0026c\\u0027d"), "{g}");
        let f = String::from_utf8(json_text(&v, JsonStyle::Facebook, 0)).unwrap();
        assert!(f.contains("Caf\\u00c3\\u00a9"), "{f}");
        let back: Value = serde_json::from_str(&g).unwrap();
        assert_eq!(back, v);
    }
}
