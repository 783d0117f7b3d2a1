//! Dates and instants on the proleptic Gregorian calendar, in UTC: the one
//! place that turns calendar dates into day counts and back, and reads the
//! date texts the bank meets (ISO 8601 / RFC 3339 in scope predicates and
//! exports, HTTP dates in `Retry-After`).
//!
//! Day counts are days since 1970-01-01 (negative before it). The
//! conversions follow H. Hinnant's `days_from_civil` / `civil_from_days`
//! and are exact for every year in [`MIN_YEAR`]`..=`[`MAX_YEAR`]; callers
//! that read years from untrusted text check them against that range (the
//! parsers here only read four-digit years).

/// Nanoseconds in a second.
pub const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Seconds in a day (leap seconds are not counted, as in Unix time).
pub const SECS_PER_DAY: i64 = 86_400;

/// The smallest year the day-count conversions are exact for.
pub const MIN_YEAR: i64 = -(1 << 40);

/// The largest year the day-count conversions are exact for.
pub const MAX_YEAR: i64 = 1 << 40;

/// Whether `y` is a leap year (every fourth year, except centuries not
/// divisible by 400); year 0 (1 BC) is one.
pub fn is_leap_year(y: i64) -> bool {
    y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0)
}

/// The number of days of month `m` (1–12) of year `y`; 0 for a month out of
/// range.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Whether `y-m-d` is a date of the calendar (month 1–12, day within the
/// month) and `y` lies in [`MIN_YEAR`]`..=`[`MAX_YEAR`].
pub fn is_valid_date(y: i64, m: u32, d: u32) -> bool {
    (MIN_YEAR..=MAX_YEAR).contains(&y) && d >= 1 && d <= days_in_month(y, m)
}

/// Days from 1970-01-01 to the date `y-m-d`. Defined for the dates
/// [`is_valid_date`] accepts; other inputs give an unspecified number
/// (never a panic for months and days out of range, years within bounds).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let m = i64::from(m);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    // Month index counted from March, so that the leap day ends the year.
    let mp = (m + 9).rem_euclid(12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` that lies `days` days after 1970-01-01;
/// the inverse of [`days_from_civil`] for days of years in
/// [`MIN_YEAR`]`..=`[`MAX_YEAR`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // 0 <= mp < 12 and 1 <= day <= 31: both fit a u32.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Reads exactly `n` ASCII digits at `*i`.
fn fixed_digits(b: &[u8], i: &mut usize, n: usize) -> Option<i64> {
    let slice = b.get(*i..*i + n)?;
    if !slice.iter().all(u8::is_ascii_digit) {
        return None;
    }
    *i += n;
    Some(
        slice
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
    )
}

/// The instant an ISO 8601 / RFC 3339 text names, in nanoseconds since
/// 1970-01-01T00:00:00Z, or `None` when the text is not one of these forms:
///
/// * `YYYY`, `YYYY-MM`, `YYYY-MM-DD` (midnight UTC of the first day);
/// * a date, `T` (also `t` or a space), `HH:MM`, optional `:SS`, optional
///   fraction (`.` or `,`, digits past the ninth ignored), then `Z`, `z`,
///   `±HH`, `±HH:MM` or `±HHMM`; without an offset the time is read as UTC.
///
/// Years 0000–9999; fields are range-checked (second 60 is accepted as a
/// leap second and counts as the next second's start).
pub fn parse_iso8601(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let mut i = 0;
    let at = |i: usize| b.get(i).copied();
    let year = fixed_digits(b, &mut i, 4)?;
    let (mut month, mut day) = (1, 1);
    let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0i64);
    let mut offset_minutes = 0i64;
    'parse: {
        if i == b.len() {
            break 'parse;
        }
        if at(i) != Some(b'-') {
            return None;
        }
        i += 1;
        month = fixed_digits(b, &mut i, 2)?;
        if i == b.len() {
            break 'parse;
        }
        if at(i) != Some(b'-') {
            return None;
        }
        i += 1;
        day = fixed_digits(b, &mut i, 2)?;
        if i == b.len() {
            break 'parse;
        }
        if !matches!(at(i), Some(b'T' | b't' | b' ')) {
            return None;
        }
        i += 1;
        hour = fixed_digits(b, &mut i, 2)?;
        if at(i) != Some(b':') {
            return None;
        }
        i += 1;
        minute = fixed_digits(b, &mut i, 2)?;
        if at(i) == Some(b':') {
            i += 1;
            second = fixed_digits(b, &mut i, 2)?;
            if matches!(at(i), Some(b'.' | b',')) {
                i += 1;
                let start = i;
                let mut scale = 100_000_000i64;
                while let Some(d) = at(i).filter(u8::is_ascii_digit) {
                    nanos += i64::from(d - b'0') * scale;
                    scale /= 10;
                    i += 1;
                }
                if i == start {
                    return None;
                }
            }
        }
        match at(i) {
            None => {}
            Some(b'Z' | b'z') => i += 1,
            Some(sign @ (b'+' | b'-')) => {
                i += 1;
                let oh = fixed_digits(b, &mut i, 2)?;
                let om = if i == b.len() {
                    0
                } else {
                    if at(i) == Some(b':') {
                        i += 1;
                    }
                    fixed_digits(b, &mut i, 2)?
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                let total = oh * 60 + om;
                offset_minutes = if sign == b'-' { -total } else { total };
            }
            Some(_) => return None,
        }
        if i != b.len() {
            return None;
        }
    }
    // Two digits: 0..=99, so the month and the day fit a u32.
    let (month, day) = (u32::try_from(month).ok()?, u32::try_from(day).ok()?);
    if !is_valid_date(year, month, day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * SECS_PER_DAY + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(i128::from(secs) * NANOS_PER_SEC + i128::from(nanos))
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

fn time_of_day(s: &str) -> Option<i64> {
    let mut parts = s.split(':');
    let h: i64 = number(parts.next()?, 2..=2)?;
    let m: i64 = number(parts.next()?, 2..=2)?;
    let sec: i64 = number(parts.next()?, 2..=2)?;
    (parts.next().is_none() && h < 24 && m < 60 && sec <= 60).then_some(h * 3600 + m * 60 + sec)
}

fn http_instant(y: i64, m: u32, d: u32, secs_of_day: i64) -> Option<i64> {
    is_valid_date(y, m, d).then(|| days_from_civil(y, m, d) * SECS_PER_DAY + secs_of_day)
}

/// The instant an HTTP date names (RFC 9110 §5.6.7, always GMT), in
/// seconds since 1970-01-01T00:00:00Z, in any of the three formats a
/// recipient must accept:
///
/// * IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`;
/// * RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT` (two-digit years below 70
///   are 20xx, the others 19xx);
/// * asctime: `Sun Nov  6 08:49:37 1994`.
///
/// The day name must be a day name; it is not checked against the date.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let words: Vec<&str> = s.split_ascii_whitespace().collect();
    match words.as_slice() {
        [day, d, mon, y, t, "GMT"] if DAYS.contains(&day.strip_suffix(',')?) => http_instant(
            number(y, 4..=4)?,
            month(mon)?,
            number(d, 2..=2)?,
            time_of_day(t)?,
        ),
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
            http_instant(y, mon, d, time_of_day(t)?)
        }
        [day, mon, d, t, y] if DAYS.contains(day) => http_instant(
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

    #[test]
    fn known_day_counts() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 3, 1), 19_783);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        assert_eq!(days_from_civil(-1, 12, 31), -719_529);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(-719_528), (0, 1, 1));
    }

    #[test]
    fn leap_years() {
        for (y, leap) in [
            (2000, true),
            (1900, false),
            (2024, true),
            (2023, false),
            (2100, false),
            (2400, true),
            (0, true),
            (-4, true),
            (-100, false),
            (-400, true),
            (-1, false),
        ] {
            assert_eq!(is_leap_year(y), leap, "{y}");
            assert_eq!(days_in_month(y, 2), if leap { 29 } else { 28 }, "{y}");
            assert_eq!(is_valid_date(y, 2, 29), leap, "{y}");
            // The day after Feb 28 is Feb 29 exactly in leap years.
            let next = civil_from_days(days_from_civil(y, 2, 28) + 1);
            assert_eq!(next, if leap { (y, 2, 29) } else { (y, 3, 1) }, "{y}");
        }
    }

    #[test]
    fn months_and_days_out_of_range() {
        assert_eq!(days_in_month(2024, 0), 0);
        assert_eq!(days_in_month(2024, 13), 0);
        for (y, m, d) in [(2024, 0, 1), (2024, 13, 1), (2024, 4, 31), (2024, 1, 0)] {
            assert!(!is_valid_date(y, m, d), "{y}-{m}-{d}");
        }
        assert!(is_valid_date(2024, 12, 31));
    }

    #[test]
    fn round_trips_every_day_of_eight_centuries() {
        // 1600-01-01 .. 2400-12-31 across the epoch, and 800 years of
        // negative years, each day once, in order.
        for start in [days_from_civil(1600, 1, 1), days_from_civil(-800, 1, 1)] {
            let mut expect = civil_from_days(start);
            for days in start..start + 293_000 {
                let date = civil_from_days(days);
                assert_eq!(date, expect, "day {days}");
                assert_eq!(days_from_civil(date.0, date.1, date.2), days);
                let (y, m, d) = date;
                expect = if d < days_in_month(y, m) {
                    (y, m, d + 1)
                } else if m < 12 {
                    (y, m + 1, 1)
                } else {
                    (y + 1, 1, 1)
                };
            }
        }
    }

    #[test]
    fn bounds() {
        for (y, m, d) in [
            (MIN_YEAR, 1, 1),
            (MIN_YEAR, 12, 31),
            (MAX_YEAR, 1, 1),
            (MAX_YEAR, 12, 31),
            (i64::from(i32::MIN), 3, 1),
            (i64::from(i32::MAX), 2, 28),
        ] {
            assert!(is_valid_date(y, m, d));
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        assert_eq!(
            days_from_civil(MAX_YEAR, 12, 31) + 1,
            days_from_civil(MAX_YEAR + 1, 1, 1)
        );
        assert!(!is_valid_date(MIN_YEAR - 1, 1, 1));
        assert!(!is_valid_date(MAX_YEAR + 1, 1, 1));
    }

    const NS: i128 = NANOS_PER_SEC;

    #[test]
    fn iso_forms() {
        let day = 1_546_300_800 * NS; // 2019-01-01T00:00:00Z
        assert_eq!(parse_iso8601("2019"), Some(day));
        assert_eq!(parse_iso8601("2019-01"), Some(day));
        assert_eq!(parse_iso8601("2019-01-01"), Some(day));
        assert_eq!(parse_iso8601("2019-01-01T00:00Z"), Some(day));
        assert_eq!(parse_iso8601("2019-01-01t00:00:00z"), Some(day));
        assert_eq!(parse_iso8601("2019-01-01 01:00:00+01:00"), Some(day));
        assert_eq!(parse_iso8601("2018-12-31T23:00:00-0100"), Some(day));
        assert_eq!(parse_iso8601("2019-01-01T02:00+02"), Some(day));
        assert_eq!(
            parse_iso8601("2019-01-01T00:00:00.123456789987Z"),
            Some(day + 123_456_789)
        );
        assert_eq!(parse_iso8601("2019-01-01T00:00:00,5"), Some(day + NS / 2));
        assert_eq!(parse_iso8601("0000-01-01"), Some(-62_167_219_200 * NS));
        assert_eq!(
            parse_iso8601("9999-12-31T23:59:60Z"),
            Some(253_402_300_800 * NS)
        );
        assert_eq!(parse_iso8601("2024-02-29"), Some(1_709_164_800 * NS));
    }

    #[test]
    fn iso_rejects() {
        for bad in [
            "",
            "19",
            "-2019",
            "+2019-01-01",
            "20190",
            "2019-1",
            "2019-13",
            "2019-00-01",
            "2019-02-29",
            "2019-04-31",
            "2019-01-00",
            "2019-01-01T",
            "2019-01-01T24:00",
            "2019-01-01T23:60",
            "2019-01-01T23:59:61",
            "2019-01-01T00:00:00.",
            "2019-01-01T00:00:00Zx",
            "2019-01-01T00:00+24:00",
            "2019-01-01T00:00+01:60",
            "2019-01-01T00:00+1",
            "2019-01-01X00:00",
            "２０１９",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad:?}");
        }
    }

    const EXAMPLE: i64 = 784_111_777; // 1994-11-06T08:49:37Z

    #[test]
    fn http_date_forms() {
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(form), Some(EXAMPLE), "{form}");
        }
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Wed, 31 Dec 1969 23:59:59 GMT"), Some(-1));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        assert_eq!(
            parse_http_date("Friday, 01-Jan-38 00:00:00 GMT"),
            Some(2_145_916_800)
        );
        assert_eq!(parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT"), Some(0));
    }

    #[test]
    fn http_date_rejects() {
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 2027 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov 06 08:49:37 94",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }
}
