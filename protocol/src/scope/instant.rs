//! Instants of a record's time field: date strings and epoch numbers,
//! compared as points in time by the time-field predicates.

use crate::anychain::Value;
use crate::date::{parse_iso8601, NANOS_PER_SEC};

/// The instant a time-field value stands for, in nanoseconds since
/// 1970-01-01T00:00:00Z, or `None` when it is not a recognizable instant.
///
/// * Strings in ISO 8601 / RFC 3339 form: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`
///   (midnight UTC), or a date, `T` (also `t` or a space), `HH:MM`,
///   optional `:SS`, optional fraction (`.` or `,`, digits past the ninth
///   ignored), then `Z`, `z`, `±HH`, `±HH:MM` or `±HHMM`; without an offset
///   the time is read as UTC. Years 0000–9999; fields are range-checked
///   (second 60 is accepted as a leap second).
/// * Numbers, and strings holding a plain decimal number (`"1562766828"`,
///   as some exports write them), are epoch times whose unit follows from
///   the magnitude: below 1e11 seconds, below 1e14 milliseconds, below 1e17
///   microseconds, below 1e20 nanoseconds; larger ones are no instant.
///   A bare 4-digit string is a year, not seconds. Note that a predicate
///   *number* such as 2018 therefore means 2018 seconds after the epoch:
///   write `"2018"` or `2018-01-01` for the year.
pub fn instant(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => epoch_number(*n),
        Value::String(s) => instant_str(s),
        _ => None,
    }
}

/// [`instant`] of a string value, without building the [`Value`].
pub fn instant_str(s: &str) -> Option<i128> {
    parse_iso8601(s).or_else(|| numeric_string(s).and_then(epoch_number))
}

/// An epoch number in seconds, milliseconds, microseconds or nanoseconds,
/// by magnitude, as nanoseconds.
fn epoch_number(n: f64) -> Option<i128> {
    if !n.is_finite() {
        return None;
    }
    let a = n.abs();
    let factor: i128 = if a < 1e11 {
        NANOS_PER_SEC
    } else if a < 1e14 {
        1_000_000
    } else if a < 1e17 {
        1_000
    } else if a < 1e20 {
        1
    } else {
        return None;
    };
    // |n| < 1e20: the integer part converts exactly and in range.
    let whole = n.trunc() as i128;
    let frac = (n.fract() * factor as f64).round() as i128;
    Some(whole * factor + frac)
}

/// A string holding a plain decimal number: `-?[0-9]+(\.[0-9]+)?`.
fn numeric_string(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !frac.is_none_or(digits) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use crate::anychain::Value;
    use crate::date::NANOS_PER_SEC;
    use serde_json::{json, Value as Json};

    #[test]
    fn instants_from_strings() {
        let ns = |s: &str| instant(&Value::from(s));
        let jan1 = Some(1_546_300_800 * NANOS_PER_SEC);
        assert_eq!(ns("2019-01-01"), jan1);
        assert_eq!(ns("2019-01-01T00:00:00Z"), jan1);
        assert_eq!(ns("2019-01-01T00:00Z"), jan1);
        assert_eq!(ns("2019-01-01t00:00:00z"), jan1);
        assert_eq!(ns("2019-01-01 00:00:00"), jan1);
        assert_eq!(ns("2019-01-01T01:00:00+01:00"), jan1);
        assert_eq!(ns("2019-01-01T01:00:00+0100"), jan1);
        assert_eq!(ns("2019-01-01T01:00:00+01"), jan1);
        assert_eq!(ns("2018-12-31T23:00:00-01:00"), jan1);
        assert_eq!(ns("2019-01"), jan1);
        assert_eq!(ns("2019"), jan1);
        assert_eq!(ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            ns("2019-07-10T13:53:48.123Z"),
            Some(1_562_766_828_123 * 1_000_000)
        );
        assert_eq!(
            ns("2019-07-10T13:53:48.123456789123Z"),
            Some(1_562_766_828_123_456_789)
        );
        assert_eq!(ns("2020-02-29"), Some(1_582_934_400 * NANOS_PER_SEC));
        assert_eq!(ns("1969-12-31T23:59:59Z"), Some(-NANOS_PER_SEC));
        assert_eq!(ns("0000-01-01"), Some(-62_167_219_200 * NANOS_PER_SEC));
        for bad in [
            "2019-02-29",
            "2019-13-01",
            "2019-00-10",
            "2019-01-32",
            "2019-01-01T24:00:00Z",
            "2019-01-01T00:60:00Z",
            "2019-01-01T00:00:00.Z",
            "2019-01-01T00:00:00+24:00",
            "2019-01-01T00:00:00Zx",
            "2019-01-01T00",
            "2019-1-1",
            "19-01-01",
            "yesterday",
            "",
            "-",
            "1.",
        ] {
            assert_eq!(ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_from_epoch_numbers() {
        let n = |x: f64| instant(&Value::Number(x));
        let t = 1_562_766_828_i128;
        assert_eq!(n(1_562_766_828.0), Some(t * NANOS_PER_SEC));
        assert_eq!(
            n(1_562_766_828_123.0),
            Some(t * NANOS_PER_SEC + 123_000_000)
        );
        assert_eq!(
            n(1_562_766_828_123_456.0),
            Some(t * NANOS_PER_SEC + 123_456_000)
        );
        assert_eq!(n(1_562_766_828.5), Some(t * NANOS_PER_SEC + 500_000_000));
        assert_eq!(n(-86_400.0), Some(-86_400 * NANOS_PER_SEC));
        assert_eq!(n(f64::NAN), None);
        assert_eq!(n(f64::INFINITY), None);
        assert_eq!(n(1e25), None);
        // Numeric strings count as epoch numbers, 4-digit ones as years.
        assert_eq!(
            instant(&Value::from("1562766828123")),
            Some(t * NANOS_PER_SEC + 123_000_000)
        );
        assert_eq!(
            instant(&Value::from("2018")),
            instant(&Value::from("2018-01-01"))
        );
        assert_eq!(instant(&Value::Bool(true)), None);
        assert_eq!(instant(&Value::Null), None);
    }

    #[test]
    fn time_field_compares_instants() {
        let s =
            Scope::parse("google.my_activity.search[time>=2019-07-10,time<2019-07-11].*").unwrap();
        let at = |v: Json| {
            s.matches(&record(json!({ "time": v })), Some("time"))
                .unwrap()
        };
        assert!(at(json!("2019-07-10T13:53:48.123Z")));
        assert!(!at(json!("2019-07-10T23:30:00-01:00")));
        assert!(at(json!(1_562_766_828_123_u64))); // epoch ms
        assert!(at(json!(1_562_766_828))); // epoch s
        assert!(at(json!("1562766828"))); // epoch s as a string
        assert!(!at(json!("2019-07-09T23:59:59.999Z")));
        assert!(!at(json!(1_562_716_799_999_u64)));
        // Without the time field declared, plain JS comparison applies:
        // string order ("2019-07-10T…" >= "2019-07-10" is true, number vs
        // date string is NaN → false).
        assert!(s
            .matches(&record(json!({"time": "2019-07-10T13:53:48.123Z"})), None)
            .unwrap());
        assert!(!s
            .matches(&record(json!({"time": 1_562_766_828_123_u64})), None)
            .unwrap());
    }

    #[test]
    fn time_field_equality_and_fallback() {
        let eq = one("=", "time", json!("2019-07-10T13:53:48.123Z"));
        let r = record(json!({"time": 1_562_766_828_123_u64}));
        assert!(eq.matches(&r, Some("time")).unwrap());
        assert!(!eq.matches(&r, None).unwrap());
        let ne = one("!=", "time", json!("2019-07-10T15:53:48.123+02:00"));
        assert!(!ne.matches(&r, Some("time")).unwrap());
        // Not an instant on one side: plain JS comparison.
        let word = one("=", "time", json!("soon"));
        assert!(word
            .matches(&record(json!({"time": "soon"})), Some("time"))
            .unwrap());
        let lt = one("<", "time", json!("b"));
        assert!(lt
            .matches(&record(json!({"time": "a"})), Some("time"))
            .unwrap());
        // Other fields are unaffected by the time field.
        let other = one("<", "n", json!("2019"));
        assert!(other
            .matches(&record(json!({"n": 5})), Some("time"))
            .unwrap());
        // A missing time field stays undefined.
        assert!(!one("<", "time", json!(1e12))
            .matches(&record(json!({})), Some("time"))
            .unwrap());
    }
}
