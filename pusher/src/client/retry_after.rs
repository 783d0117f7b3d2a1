//! `Retry-After` (RFC 9110 §10.2.3): delay seconds, or an HTTP date in any
//! of the three formats a recipient must accept (IMF-fixdate, RFC 850,
//! asctime).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The delay a `Retry-After` value asks for, counted from `now`; a date in
/// the past gives zero. `None` when the value is neither form.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long numbers saturate.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn month(name: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| *m == name)
        .and_then(|i| u32::try_from(i + 1).ok())
}

fn number<T: std::str::FromStr>(s: &str, digits: std::ops::RangeInclusive<usize>) -> Option<T> {
    (digits.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn time_of_day(s: &str) -> Option<u64> {
    let mut parts = s.split(':');
    let h: u64 = number(parts.next()?, 2..=2)?;
    let m: u64 = number(parts.next()?, 2..=2)?;
    let sec: u64 = number(parts.next()?, 2..=2)?;
    (parts.next().is_none() && h < 24 && m < 60 && sec <= 60).then_some(h * 3600 + m * 60 + sec)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn instant(y: i64, m: u32, d: u32, secs_of_day: u64) -> Option<SystemTime> {
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(days * 86_400 + secs_of_day))
}

/// Parses an HTTP date (always GMT).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let words: Vec<&str> = s.split_ascii_whitespace().collect();
    match words.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [day, d, mon, y, t, "GMT"] if DAYS.contains(&day.strip_suffix(',')?) => instant(
            number(y, 4..=4)?,
            month(mon)?,
            number(d, 2..=2)?,
            time_of_day(t)?,
        ),
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [day, date, t, "GMT"] if LONG_DAYS.contains(&day.strip_suffix(',')?) => {
            let mut parts = date.split('-');
            let d = number(parts.next()?, 2..=2)?;
            let mon = month(parts.next()?)?;
            let yy: i64 = number(parts.next()?, 2..=2)?;
            if parts.next().is_some() {
                return None;
            }
            // Two-digit years: the closest century that is not more than
            // 50 years ahead (RFC 9110), approximated with the 1970 pivot.
            let y = if yy < 70 { 2000 + yy } else { 1900 + yy };
            instant(y, mon, d, time_of_day(t)?)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [day, mon, d, t, y] if DAYS.contains(day) => instant(
            number(y, 4..=4)?,
            month(mon)?,
            number(d, 1..=2)?,
            time_of_day(t)?,
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: u64 = 784_111_777; // 1994-11-06T08:49:37Z

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn delay_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-1", "1.5", "+3", "soon", "1 2"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn the_three_date_forms() {
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(form), Some(at(EXAMPLE)), "{form}");
        }
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(at(1_835_481_599))
        );
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 2027 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_count_from_now() {
        let now = at(EXAMPLE - 30);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(30))
        );
        let later = at(EXAMPLE + 30);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", later),
            Some(Duration::ZERO)
        );
    }
}
