//! The dates of Google's HTML My Activity (EXPORTS.md §1.1), read as UTC.
//!
//! Three forms, in English month-first order (`Jun 23, 2015, 2:43:45 PM`)
//! or day-first with a 24-hour clock (`15 jun 2026, 20:30:41 CEST`):
//!
//! * no zone (old exports): the time is UTC;
//! * `UTC` or `GMT` (about 2018–2020);
//! * the zone abbreviation of the export moment (`PDT`, `BST`…), or an
//!   offset (`GMT+02:00`): its fixed offset applies to every date of the
//!   file, whatever the date's season ("BST" on January dates).
//!
//! Spaces may be `\xa0`, narrow no-break spaces or thin spaces; month
//! abbreviations come from the catalog (`activity_html.months`).

use protocol::date::{civil_from_days, days_from_civil, is_valid_date};

/// Zone abbreviations Google writes and their offsets in minutes east of
/// UTC. Ambiguous ones take the meaning of the English (US) locale
/// (`CST` = US Central, `IST` = India).
const ZONES: &[(&str, i32)] = &[
    ("UTC", 0),
    ("GMT", 0),
    ("Z", 0),
    ("WET", 0),
    ("WEST", 60),
    ("BST", 60),
    ("IST", 330),
    ("CET", 60),
    ("CEST", 120),
    ("MEZ", 60),
    ("MESZ", 120),
    ("EET", 120),
    ("EEST", 180),
    ("MSK", 180),
    ("SAST", 120),
    ("PST", -480),
    ("PDT", -420),
    ("MST", -420),
    ("MDT", -360),
    ("CST", -360),
    ("CDT", -300),
    ("EST", -300),
    ("EDT", -240),
    ("AKST", -540),
    ("AKDT", -480),
    ("HST", -600),
    ("AST", -240),
    ("ADT", -180),
    ("NST", -210),
    ("NDT", -150),
    ("JST", 540),
    ("KST", 540),
    ("HKT", 480),
    ("SGT", 480),
    ("AWST", 480),
    ("ACST", 570),
    ("ACDT", 630),
    ("AEST", 600),
    ("AEDT", 660),
    ("NZST", 720),
    ("NZDT", 780),
];

/// Whether `c` separates the words of a date.
fn is_space(c: char) -> bool {
    c.is_whitespace() || c == ','
}

/// The offset of a zone word: an abbreviation or `GMT±H[H][:MM]`.
fn zone_offset(word: &str) -> Option<i32> {
    let upper = word.to_ascii_uppercase();
    if let Some((_, off)) = ZONES.iter().find(|(name, _)| *name == upper) {
        return Some(*off);
    }
    let rest = upper
        .strip_prefix("GMT")
        .or_else(|| upper.strip_prefix("UTC"))?;
    let (sign, digits) = match rest.as_bytes().first()? {
        b'+' => (1, rest.get(1..)?),
        b'-' => (-1, rest.get(1..)?),
        _ => return None,
    };
    let (h, m) = match digits.split_once(':') {
        Some((h, m)) => (h, m),
        None if digits.len() == 4 => (digits.get(..2)?, digits.get(2..)?),
        None => (digits, "0"),
    };
    let (h, m) = (small(h)?, small(m)?);
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 60 + m) as i32)
}

fn small(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The month (1–12) of an abbreviation in any of the catalog's languages.
fn month(word: &str, months: &[Vec<String>]) -> Option<u32> {
    let word = word.trim_end_matches('.');
    months.iter().find_map(|list| {
        list.iter()
            .position(|m| m.trim_end_matches('.').eq_ignore_ascii_case(word))
            .map(|i| i as u32 + 1)
    })
}

/// Reads an HTML My Activity date as epoch seconds (UTC).
pub(crate) fn parse(text: &str, months: &[Vec<String>]) -> Option<i64> {
    let words: Vec<&str> = text.split(is_space).filter(|w| !w.is_empty()).collect();
    let mut it = words.iter().copied();
    let (first, second) = (it.next()?, it.next()?);
    let (m, d) = match (month(first, months), small(first)) {
        (Some(m), _) => (m, small(second)?),
        (None, Some(d)) => (month(second, months)?, d),
        _ => return None,
    };
    let y: i64 = {
        let w = it.next()?;
        if w.len() != 4 || !w.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        w.parse().ok()?
    };
    let mut clock = it.next()?.split(':');
    let (mut h, mi, s) = (
        small(clock.next()?)?,
        small(clock.next()?)?,
        small(clock.next()?)?,
    );
    if clock.next().is_some() {
        return None;
    }
    let mut rest: Vec<&str> = it.collect();
    match rest.first().map(|w| w.to_ascii_uppercase()) {
        Some(w) if w == "AM" || w == "PM" => {
            if !(1..=12).contains(&h) {
                return None;
            }
            h %= 12;
            if w == "PM" {
                h += 12;
            }
            rest.remove(0);
        }
        _ => {}
    }
    let offset = match rest.as_slice() {
        [] => 0,
        [zone] => zone_offset(zone)?,
        _ => return None,
    };
    if h > 23 || mi > 59 || s > 60 || !is_valid_date(y, m, d) {
        return None;
    }
    let local = days_from_civil(y, m, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s);
    Some(local - i64::from(offset) * 60)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the `time` of a record read from HTML.
pub(crate) fn iso(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn months() -> Vec<Vec<String>> {
        let en = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec";
        let nl = "jan feb mrt apr mei jun jul aug sep okt nov dec";
        [en, nl]
            .iter()
            .map(|l| l.split(' ').map(str::to_owned).collect())
            .collect()
    }

    fn at(text: &str) -> Option<String> {
        parse(text, &months()).map(iso)
    }

    #[test]
    fn the_three_forms() {
        // Old exports: no zone, UTC.
        assert_eq!(
            at("Jun 23, 2015, 2:43:45 PM").unwrap(),
            "2015-06-23T14:43:45Z"
        );
        // ~2018–2020: UTC written.
        assert_eq!(
            at("Jan 22, 2020, 8:34:00 PM UTC").unwrap(),
            "2020-01-22T20:34:00Z"
        );
        assert_eq!(
            at("Jan 25, 2019, 8:23:48 AM GMT").unwrap(),
            "2019-01-25T08:23:48Z"
        );
        // Later: the export moment's zone, its fixed offset on every date.
        assert_eq!(
            at("Aug 25, 2020, 5:06:44 PM PDT").unwrap(),
            "2020-08-26T00:06:44Z"
        );
        assert_eq!(
            at("Sep 4, 2020, 11:01:46 AM PDT").unwrap(),
            "2020-09-04T18:01:46Z"
        );
        assert_eq!(
            at("Jan 3, 2021, 9:00:00 AM BST").unwrap(),
            "2021-01-03T08:00:00Z"
        );
        assert_eq!(
            at("Sep 10, 2019, 8:51:45 PM MSK").unwrap(),
            "2019-09-10T17:51:45Z"
        );
        assert_eq!(
            at("Mar 1, 2022, 1:00:00 AM GMT+02:00").unwrap(),
            "2022-02-28T23:00:00Z"
        );
    }

    #[test]
    fn spaces_clocks_and_languages() {
        // \xa0 and the narrow no-break space before AM/PM (newer exports).
        assert_eq!(
            at("Jun\u{a0}23, 2015, 2:43:45\u{202f}PM\u{a0}UTC").unwrap(),
            "2015-06-23T14:43:45Z"
        );
        assert_eq!(
            at("Dec 31, 2019, 12:00:00 AM").unwrap(),
            "2019-12-31T00:00:00Z"
        );
        assert_eq!(
            at("Dec 31, 2019, 12:30:00 PM").unwrap(),
            "2019-12-31T12:30:00Z"
        );
        // Day first, 24 hours, Dutch months.
        assert_eq!(
            at("15 jun 2026, 20:30:41 CEST").unwrap(),
            "2026-06-15T18:30:41Z"
        );
        assert_eq!(
            at("3 mrt 2024, 08:00:00 CET").unwrap(),
            "2024-03-03T07:00:00Z"
        );
    }

    #[test]
    fn what_is_not_a_date() {
        for bad in [
            "",
            "Watched a video",
            "Jun 31, 2015, 2:43:45 PM",
            "Jun 23, 15, 2:43:45 PM",
            "Jun 23, 2015, 13:43:45 PM",
            "Jun 23, 2015, 2:43 PM",
            "Jun 23, 2015, 2:43:45 PM XYZ",
            "Jun 23, 2015, 2:43:45 PM UTC extra",
            "Foo 23, 2015, 2:43:45 PM",
            "Jun 23, 2015, 2:43:45 PM GMT+15",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }
}
