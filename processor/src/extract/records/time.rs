//! Time fields: the instant of a time value in its declared format.

use protocol::anychain::Value;
use protocol::date::{civil_from_days, days_from_civil, is_valid_date};
use protocol::scope::{instant, instant_str};
use serde_json::Value as Json;

use crate::extract::catalog::{TimeField, TimeFormat};

/// The canonical instant text of a time value in its declared format.
#[cfg(test)]
pub(crate) fn time_value(v: &Json, tf: &TimeField) -> Option<Json> {
    time_nanos(v, tf).and_then(format_nanos).map(Json::String)
}

/// The instant of a time value in its declared format, in nanoseconds.
pub(super) fn time_nanos(v: &Json, tf: &TimeField) -> Option<i128> {
    let mut v = v;
    if let Some(path) = &tf.at {
        for seg in path.split('.') {
            v = v.get(seg)?;
        }
    }
    match tf.format {
        TimeFormat::Iso8601 => match v {
            Json::String(s) => instant_str(first_of(s)),
            other => instant(&Value::from_plain_json(other)),
        },
        TimeFormat::EpochS => epoch(v, 1_000_000_000),
        TimeFormat::EpochMs => epoch(v, 1_000_000),
        TimeFormat::EpochUs => epoch(v, 1_000),
        TimeFormat::UsDatetime => {
            let s = first_of(v.as_str()?);
            us_datetime(s).or_else(|| instant_str(s))
        }
        TimeFormat::DdMonYyyy => dd_mon_yyyy(first_of(v.as_str()?)),
    }
}

/// Text up to the first ` and ` (Amazon joins several dates with it).
fn first_of(s: &str) -> &str {
    s.split(" and ").next().unwrap_or(s).trim()
}

fn epoch(v: &Json, factor: i128) -> Option<i128> {
    let (int, frac) = match v {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                (i128::from(i), 0.0)
            } else if let Some(u) = n.as_u64() {
                (i128::from(u), 0.0)
            } else {
                let f = n.as_f64()?;
                if !f.is_finite() || f.abs() > 1e20 {
                    return None;
                }
                (f.trunc() as i128, f.fract())
            }
        }
        Json::String(s) => {
            let s = s.trim();
            let (i, f) = s.split_once('.').unwrap_or((s, ""));
            let digits = i.strip_prefix('-').unwrap_or(i);
            if digits.is_empty()
                || digits.len() > 20
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || !f.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let whole: i128 = i.parse().ok()?;
            let frac: f64 = if f.is_empty() {
                0.0
            } else {
                format!("0.{f}").parse().ok()?
            };
            (whole, if whole < 0 { -frac } else { frac })
        }
        _ => return None,
    };
    int.checked_mul(factor)?
        .checked_add((frac * factor as f64).round() as i128)
}

const NS_PER_DAY: i128 = 86_400 * 1_000_000_000;

/// Whether [`format_nanos`] renders an instant (years 0000–9999).
pub(super) fn representable(nanos: i128) -> bool {
    i64::try_from(nanos.div_euclid(NS_PER_DAY))
        .is_ok_and(|days| (0..=9999).contains(&civil_from_days(days).0))
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, years 0000–9999.
#[cfg(test)]
pub(crate) fn format_nanos(nanos: i128) -> Option<String> {
    let days = i64::try_from(nanos.div_euclid(NS_PER_DAY)).ok()?;
    let rest = nanos.rem_euclid(NS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let secs = rest / 1_000_000_000;
    let ns = rest % 1_000_000_000;
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ns:09}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `MM/DD/YYYY HH:MM:SS UTC` (the ` UTC` is optional).
fn us_datetime(s: &str) -> Option<i128> {
    let s = s.strip_suffix(" UTC").unwrap_or(s);
    let (date, time) = s.split_once(' ').unwrap_or((s, "00:00:00"));
    let mut dp = date.split('/');
    let (m, d, y) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if dp.next().is_some() || !is_valid_date(i64::from(y), m, d) {
        return None;
    }
    let mut tp = time.split(':');
    let (h, mi, se) = (
        num(tp.next()?)?,
        num(tp.next()?)?,
        num(tp.next().unwrap_or("0"))?,
    );
    if tp.next().is_some() || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = i128::from(days_from_civil(i64::from(y), m, d));
    Some(days * NS_PER_DAY + i128::from(h * 3600 + mi * 60 + se) * 1_000_000_000)
}

/// `DD-MON-YYYY`, e.g. `07-FEB-2018`.
fn dd_mon_yyyy(s: &str) -> Option<i128> {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let mut p = s.split('-');
    let d = num(p.next()?)?;
    let mon = p.next()?.to_ascii_uppercase();
    let y = num(p.next()?)?;
    if p.next().is_some() {
        return None;
    }
    let m = MONTHS.iter().position(|x| *x == mon)? as u32 + 1;
    if !is_valid_date(i64::from(y), m, d) {
        return None;
    }
    Some(i128::from(days_from_civil(i64::from(y), m, d)) * NS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats() {
        let tf = |f: TimeFormat| TimeField {
            field: "t".into(),
            at: None,
            format: f,
        };
        let t = |v: Json, f| time_value(&v, &tf(f)).and_then(|j| j.as_str().map(str::to_owned));
        let want = Some("2021-04-02T23:04:50.134513000Z".to_owned());
        assert_eq!(
            t(
                serde_json::json!(1_617_404_690_134_513_i64),
                TimeFormat::EpochUs
            ),
            want
        );
        assert_eq!(
            t(serde_json::json!("1617404690134"), TimeFormat::EpochMs).as_deref(),
            Some("2021-04-02T23:04:50.134000000Z")
        );
        assert_eq!(
            t(serde_json::json!(-86_400), TimeFormat::EpochS).as_deref(),
            Some("1969-12-31T00:00:00.000000000Z")
        );
        assert_eq!(
            t(
                serde_json::json!("11/11/2021 22:32:48 UTC"),
                TimeFormat::UsDatetime
            )
            .as_deref(),
            Some("2021-11-11T22:32:48.000000000Z")
        );
        assert_eq!(
            t(serde_json::json!("07-FEB-2018"), TimeFormat::DdMonYyyy).as_deref(),
            Some("2018-02-07T00:00:00.000000000Z")
        );
        assert_eq!(
            t(
                serde_json::json!("2019-07-10T15:53:48.123+02:00"),
                TimeFormat::Iso8601
            )
            .as_deref(),
            Some("2019-07-10T13:53:48.123000000Z")
        );
        assert_eq!(
            t(serde_json::json!("31-FEB-2018"), TimeFormat::DdMonYyyy),
            None
        );
        assert_eq!(t(serde_json::json!("soon"), TimeFormat::Iso8601), None);
        assert_eq!(t(serde_json::json!(true), TimeFormat::EpochS), None);
    }
}
