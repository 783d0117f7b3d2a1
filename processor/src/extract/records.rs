//! Reading the records of one file, keeping those a scope matches, and
//! writing the filtered file.
//!
//! JSON is read with a small scanner that finds each record's bytes without
//! building a tree; a record is then parsed with only the fields the scope
//! needs (predicates, projection, references). A kept record that is not
//! projected is written as its original bytes, so a filtered file is a
//! subset of the dump's records, byte for byte.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::io::{self, BufRead};

use protocol::anychain::Value;
use protocol::date::{civil_from_days, days_from_civil, is_valid_date};
use protocol::scope::{instant, instant_str, Fields, Op, Record, Scope};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value as Json};

use super::catalog::{
    ActivityHtmlWords, FileRule, RecordFormat, RefBase, TextEncoding, TimeField, TimeFormat,
};
use super::source::check_name;

/// Deepest nesting the scanner follows.
const MAX_DEPTH: usize = 512;

/// Why reading a file's records stopped.
#[derive(Debug)]
pub(crate) enum RecError {
    /// The bytes could not be read (corrupt or truncated dump, limit): ends
    /// the transfer.
    Io(io::Error),
    /// The file is not what the catalog expects: the file is skipped.
    Format(String),
}

impl From<io::Error> for RecError {
    fn from(e: io::Error) -> Self {
        RecError::Io(e)
    }
}

/// A format error with this message.
pub(super) fn bad(msg: impl Into<String>) -> RecError {
    RecError::Format(msg.into())
}

// ---------------------------------------------------------------------------
// Output

/// Where a filtered file goes: the entry is started only when the first
/// record is kept.
pub(crate) trait Sink {
    /// Starts the output entry.
    fn begin(&mut self) -> io::Result<()>;
    /// Writes bytes of the entry.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// Holds the framing (`[`, wrapper keys, CSV header) until a record is
/// kept, so that a file without kept records leaves nothing behind.
pub(crate) struct Emitter<'a> {
    sink: Option<&'a mut dyn Sink>,
    started: bool,
    pending: Vec<u8>,
    /// Records written.
    pub(crate) records: u64,
}

impl<'a> Emitter<'a> {
    /// An emitter writing to `sink`, or only counting when `None`.
    pub(crate) fn new(sink: Option<&'a mut dyn Sink>) -> Self {
        Emitter {
            sink,
            started: false,
            pending: Vec::new(),
            records: 0,
        }
    }

    /// Whether the output entry was started.
    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// Framing bytes, written once a record is kept.
    pub(super) fn context(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.started {
            if let Some(s) = self.sink.as_deref_mut() {
                s.write(bytes)?;
            }
        } else {
            self.pending.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn record(&mut self, prefix: &[u8], body: &[u8]) -> io::Result<()> {
        if !self.started {
            self.started = true;
            if let Some(s) = self.sink.as_deref_mut() {
                s.begin()?;
                s.write(&self.pending)?;
            }
            self.pending = Vec::new();
        }
        if let Some(s) = self.sink.as_deref_mut() {
            s.write(prefix)?;
            s.write(body)?;
        }
        self.records += 1;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Matching

/// Applies one scope to the records of one file of one rule.
pub(crate) struct Matcher<'a> {
    scope: &'a Scope,
    rule: &'a FileRule,
    mojibake: bool,
    /// The fields a record is parsed for (a handful: a list is faster to
    /// search than a hash set).
    needed: Vec<String>,
    /// Per predicate: the instant of its value when it compares a time field
    /// of the rule as an instant (computed once, not per record).
    instants: Vec<Option<i128>>,
    /// The folder of the file, for `base = "dir"` references.
    dir: String,
    max_record: usize,
    words: Option<&'a ActivityHtmlWords>,
    /// Records read.
    pub(crate) seen: u64,
    /// Lower-case full paths referenced by kept records (`base = "dir"`).
    pub(crate) refs_exact: Vec<String>,
    /// Lower-case paths from the export root (`base = "root"`), matched as
    /// path suffixes.
    pub(crate) refs_root: Vec<String>,
}

impl<'a> Matcher<'a> {
    pub(crate) fn new(
        scope: &'a Scope,
        rule: &'a FileRule,
        encoding: TextEncoding,
        entry: &str,
        max_record: usize,
    ) -> Self {
        let mut needed: Vec<String> = Vec::new();
        let mut need = |field: &String| {
            if !needed.contains(field) {
                needed.push(field.clone());
            }
        };
        scope.predicates.iter().for_each(|p| need(&p.field));
        if let Fields::Only(names) = &scope.fields {
            names.iter().for_each(&mut need);
        }
        for r in &rule.references {
            if keeps(scope, &r.field) {
                need(&r.field);
            }
        }
        let instants = scope
            .predicates
            .iter()
            .map(|p| {
                let timed = p.op != Op::Has && rule.time_field(&p.field).is_some();
                p.value.as_ref().filter(|_| timed).and_then(instant)
            })
            .collect();
        let dir = entry.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        Matcher {
            scope,
            rule,
            mojibake: encoding == TextEncoding::FacebookMojibake,
            needed,
            instants,
            dir: dir.to_owned(),
            max_record,
            words: None,
            seen: 0,
            refs_exact: Vec::new(),
            refs_root: Vec::new(),
        }
    }

    /// The words of HTML My Activity files (the provider catalog's).
    pub(crate) fn with_words(mut self, words: &'a ActivityHtmlWords) -> Self {
        self.words = Some(words);
        self
    }

    /// The largest record read into memory.
    pub(super) fn max_record(&self) -> usize {
        self.max_record
    }

    fn project_all(&self) -> bool {
        self.scope.fields == Fields::All
    }

    /// Parses a record's needed fields; the bytes must be one JSON object.
    fn parse(&self, raw: &[u8]) -> Result<Record, RecError> {
        let mut de = serde_json::Deserializer::from_slice(raw);
        let rec = Partial(self.needed.as_slice())
            .deserialize(&mut de)
            .map_err(|e| bad(format!("bad record: {e}")))?;
        de.end().map_err(|e| bad(format!("bad record: {e}")))?;
        Ok(rec)
    }

    /// Whether the record matches every predicate, time fields compared as
    /// instants in their declared format. A predicate that cannot be
    /// evaluated does not match.
    ///
    /// A predicate on a time field whose value is an instant compares the
    /// record's instant directly; the result is that of `matches_slow`
    /// (the record's time read in its declared format, rendered as canonical
    /// text, read back as an instant), without the text.
    pub(crate) fn matches(&self, rec: &Record) -> bool {
        if self.scope.predicates.is_empty() {
            return true;
        }
        let fixed: Cow<'_, Record> = if self.mojibake {
            Cow::Owned(
                rec.iter()
                    .map(|(k, v)| (k.clone(), fix_mojibake(v)))
                    .collect(),
            )
        } else {
            Cow::Borrowed(rec)
        };
        for (p, want) in self.scope.predicates.iter().zip(&self.instants) {
            let known = want.and_then(|b| self.record_instant(rec, &p.field).map(|a| (a, b)));
            if let Some((a, b)) = known {
                let holds = match p.op {
                    Op::Eq => a == b,
                    Op::Ne => a != b,
                    Op::Lt => a < b,
                    Op::Le => a <= b,
                    Op::Gt => a > b,
                    Op::Ge => a >= b,
                    Op::Has => rec.contains_key(&p.field),
                };
                if !holds {
                    return false;
                }
                continue;
            }
            let time = self.rule.time_field(&p.field).map(|_| p.field.as_str());
            if !matches!(p.holds(fixed.as_ref(), time), Ok(true)) {
                return false;
            }
        }
        true
    }

    /// The instant of a record's time field as [`time_value`] reads it (the
    /// last time rule of that field that reads one, as the map of
    /// `matches_slow` keeps it), when it has a canonical text.
    fn record_instant(&self, rec: &Record, field: &str) -> Option<i128> {
        let v = rec.get(field)?;
        self.rule
            .time
            .iter()
            .rev()
            .filter(|tf| tf.field == field)
            .find_map(|tf| time_nanos(v, tf).filter(|n| representable(*n)))
    }

    /// The reference of [`Self::matches`], as it was written first.
    #[cfg(test)]
    /// Whether the record matches every predicate, time fields compared as
    /// instants in their declared format. A predicate that cannot be
    /// evaluated does not match.
    fn matches_slow(&self, rec: &Record) -> bool {
        if self.scope.predicates.is_empty() {
            return true;
        }
        let mut norm = Map::new();
        for tf in &self.rule.time {
            let compared = self.scope.predicates.iter().any(|p| p.field == tf.field);
            if !compared {
                continue;
            }
            if let Some(t) = rec.get(&tf.field).and_then(|v| time_value(v, tf)) {
                norm.insert(tf.field.clone(), t);
            }
        }
        let fixed: Cow<'_, Record> = if self.mojibake {
            Cow::Owned(
                rec.iter()
                    .map(|(k, v)| (k.clone(), fix_mojibake(v)))
                    .collect(),
            )
        } else {
            Cow::Borrowed(rec)
        };
        for p in &self.scope.predicates {
            let time = self.rule.time_field(&p.field).map(|_| p.field.as_str());
            let instant_value = p.value.as_ref().is_some_and(|v| instant(v).is_some());
            let target = if time.is_some() && instant_value && norm.contains_key(&p.field) {
                &norm
            } else {
                fixed.as_ref()
            };
            if !matches!(p.holds(target, time), Ok(true)) {
                return false;
            }
        }
        true
    }

    /// Notes the media a kept record names.
    fn collect_refs(&mut self, rec: &Record) {
        for r in &self.rule.references {
            if !keeps(self.scope, &r.field) {
                continue;
            }
            let Some(v) = rec.get(&r.field) else {
                continue;
            };
            let mut names = Vec::new();
            strings(v, r.key.as_deref(), &mut names, 0);
            for name in names {
                if name.contains("://") {
                    continue;
                }
                let name = name.trim_start_matches('/');
                match r.base {
                    RefBase::Dir => {
                        let full = if self.dir.is_empty() {
                            name.to_owned()
                        } else {
                            format!("{}/{name}", self.dir)
                        };
                        if let Ok((n, false)) = check_name(&full) {
                            self.refs_exact.push(n.to_lowercase());
                        }
                    }
                    RefBase::Root => {
                        if let Ok((n, false)) = check_name(name) {
                            self.refs_root.push(n.to_lowercase());
                        }
                    }
                }
            }
        }
    }

    /// Handles one JSON record: matches, collects references, writes it.
    pub(super) fn json_record(
        &mut self,
        raw: &[u8],
        prefix: &[u8],
        em: &mut Emitter<'_>,
    ) -> Result<bool, RecError> {
        let rec = self.parse(raw)?;
        self.seen += 1;
        if !self.matches(&rec) {
            return Ok(false);
        }
        self.collect_refs(&rec);
        if self.project_all() {
            em.record(prefix, raw)?;
        } else {
            let out = serde_json::to_vec(&self.scope.project(rec))
                .map_err(|e| bad(format!("re-encoding a record: {e}")))?;
            em.record(prefix, &out)?;
        }
        Ok(true)
    }
}

/// Whether a scope's projection keeps `field`.
fn keeps(scope: &Scope, field: &str) -> bool {
    match &scope.fields {
        Fields::All => true,
        Fields::Only(names) => names.iter().any(|n| n == field),
    }
}

/// Every string under `v` (under objects' `key` when given).
fn strings(v: &Json, key: Option<&str>, out: &mut Vec<String>, depth: usize) {
    if depth > 64 || out.len() > 10_000 {
        return;
    }
    match v {
        Json::String(s) if key.is_none() => out.push(s.clone()),
        Json::Array(items) => items.iter().for_each(|i| strings(i, key, out, depth + 1)),
        Json::Object(map) => {
            for (k, val) in map {
                match (key, val) {
                    (Some(want), Json::String(s)) if k == want => out.push(s.clone()),
                    _ => strings(val, key, out, depth + 1),
                }
            }
        }
        _ => {}
    }
}

/// Repairs Facebook mojibake: a string whose characters are all ≤ U+00FF is
/// read as latin-1 bytes and decoded as UTF-8 (kept as is when that fails).
pub(crate) fn fix_mojibake(v: &Json) -> Json {
    match v {
        Json::String(s) => Json::String(fix_string(s)),
        Json::Array(items) => Json::Array(items.iter().map(fix_mojibake).collect()),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (fix_string(k), fix_mojibake(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn fix_string(s: &str) -> String {
    if s.is_ascii() || s.chars().any(|c| u32::from(c) > 0xFF) {
        return s.to_owned();
    }
    let bytes: Vec<u8> = s.chars().map(|c| u32::from(c) as u8).collect();
    String::from_utf8(bytes).unwrap_or_else(|_| s.to_owned())
}

/// Reads only the `needed` fields of a JSON object.
struct Partial<'n>(&'n [String]);

impl<'de> DeserializeSeed<'de> for Partial<'_> {
    type Value = Record;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Record, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Partial<'_> {
    type Value = Record;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if self.0.iter().any(|n| n == key.as_ref()) {
                let v: Json = map.next_value()?;
                out.insert(key.into_owned(), v);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Time fields

/// The canonical instant text of a time value in its declared format.
#[cfg(test)]
pub(crate) fn time_value(v: &Json, tf: &TimeField) -> Option<Json> {
    time_nanos(v, tf).and_then(format_nanos).map(Json::String)
}

/// The instant of a time value in its declared format, in nanoseconds.
fn time_nanos(v: &Json, tf: &TimeField) -> Option<i128> {
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
fn representable(nanos: i128) -> bool {
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

// ---------------------------------------------------------------------------
// JSON scanning

/// Finds JSON values in a byte stream without parsing them.
pub(crate) struct Scanner<R> {
    r: R,
}

impl<R: BufRead> Scanner<R> {
    pub(crate) fn new(r: R) -> Self {
        Scanner { r }
    }

    /// The next non-whitespace byte, not consumed; `None` at the end.
    fn peek(&mut self) -> Result<Option<u8>, RecError> {
        loop {
            let buf = self.r.fill_buf()?;
            let Some(first) = buf.first().copied() else {
                return Ok(None);
            };
            let ws = buf
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
            match ws {
                Some(0) => return Ok(Some(first)),
                Some(n) => {
                    self.r.consume(n);
                    let next = self.r.fill_buf()?.first().copied();
                    if let Some(b) = next {
                        if !matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                            return Ok(Some(b));
                        }
                    }
                }
                None => {
                    let n = buf.len();
                    self.r.consume(n);
                }
            }
        }
    }

    fn bump(&mut self) {
        self.r.consume(1);
    }

    /// Skips a UTF-8 byte order mark at the start.
    fn skip_bom(&mut self) -> Result<(), RecError> {
        let buf = self.r.fill_buf()?;
        if buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.r.consume(3);
        }
        Ok(())
    }

    fn expect_end(&mut self) -> Result<(), RecError> {
        match self.peek()? {
            None => Ok(()),
            Some(_) => Err(bad("data after the end of the JSON value")),
        }
    }

    /// Reads one value, copying it into `out` when given (at most `limit`
    /// bytes), skipping it otherwise. Checks structure (brackets, strings),
    /// not grammar: kept bytes are parsed afterwards.
    fn value(&mut self, mut out: Option<&mut Vec<u8>>, limit: usize) -> Result<(), RecError> {
        let first = self.peek()?.ok_or_else(|| bad("unexpected end of JSON"))?;
        if !matches!(first, b'{' | b'[' | b'"') {
            // A scalar: up to the next delimiter.
            let mut total = 0usize;
            loop {
                let buf = self.r.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                let end = buf
                    .iter()
                    .position(|b| {
                        matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n' | b':')
                    })
                    .unwrap_or(buf.len());
                total += end;
                if total > limit {
                    return Err(bad(format!("value larger than {limit} bytes")));
                }
                if let (Some(o), Some(part)) = (out.as_deref_mut(), buf.get(..end)) {
                    o.extend_from_slice(part);
                }
                let more = end == buf.len();
                self.r.consume(end);
                if !more {
                    break;
                }
            }
            if total == 0 {
                return Err(bad("unexpected character in JSON"));
            }
            return Ok(());
        }
        let mut depth = 0usize;
        let mut in_str = false;
        let mut esc = false;
        let mut total = 0usize;
        loop {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Err(bad("JSON ends in the middle of a value"));
            }
            let mut i = 0usize;
            let mut done = false;
            while i < buf.len() {
                if in_str && !esc {
                    // Jump to the next quote or backslash.
                    match buf
                        .get(i..)
                        .and_then(|rest| rest.iter().position(|b| *b == b'"' || *b == b'\\'))
                    {
                        Some(p) => i += p,
                        None => {
                            i = buf.len();
                            break;
                        }
                    }
                }
                let b = buf.get(i).copied().unwrap_or(0);
                i += 1;
                if in_str {
                    if esc {
                        esc = false;
                    } else if b == b'\\' {
                        esc = true;
                    } else if b == b'"' {
                        in_str = false;
                        if depth == 0 {
                            done = true;
                            break;
                        }
                    }
                    continue;
                }
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => {
                        depth += 1;
                        if depth > MAX_DEPTH {
                            return Err(bad("JSON nested too deeply"));
                        }
                    }
                    b'}' | b']' => {
                        if depth == 0 {
                            return Err(bad("unbalanced JSON brackets"));
                        }
                        depth -= 1;
                        if depth == 0 {
                            done = true;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            total += i;
            if out.is_some() && total > limit {
                return Err(bad(format!(
                    "record larger than {limit} bytes (limit max_record_bytes)"
                )));
            }
            if let (Some(o), Some(part)) = (out.as_deref_mut(), buf.get(..i)) {
                o.extend_from_slice(part);
            }
            self.r.consume(i);
            if done {
                return Ok(());
            }
        }
    }

    /// Reads `"…"` raw, and the key it holds.
    fn key(&mut self, raw: &mut Vec<u8>) -> Result<String, RecError> {
        if self.peek()? != Some(b'"') {
            return Err(bad("expected an object key"));
        }
        raw.clear();
        self.value(Some(raw), 1 << 16)?;
        serde_json::from_slice(raw).map_err(|e| bad(format!("bad object key: {e}")))
    }

    fn colon(&mut self) -> Result<(), RecError> {
        if self.peek()? != Some(b':') {
            return Err(bad("expected ':'"));
        }
        self.bump();
        Ok(())
    }
}

/// Reads the records of an array after its `[`, up to and including `]`.
fn array_records<R: BufRead>(
    sc: &mut Scanner<R>,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
    buf: &mut Vec<u8>,
) -> Result<(), RecError> {
    let mut written = 0u64;
    if sc.peek()? == Some(b']') {
        sc.bump();
        return Ok(());
    }
    loop {
        if sc.peek()? != Some(b'{') {
            return Err(bad("an array item is not an object"));
        }
        buf.clear();
        sc.value(Some(buf), m.max_record)?;
        let prefix: &[u8] = if written > 0 { b"," } else { b"" };
        if m.json_record(buf, prefix, em)? {
            written += 1;
        }
        match sc.peek()? {
            Some(b',') => sc.bump(),
            Some(b']') => {
                sc.bump();
                return Ok(());
            }
            Some(_) => return Err(bad("expected ',' or ']' in an array")),
            None => return Err(bad("JSON ends inside an array")),
        }
    }
}

fn json_array<R: BufRead>(
    sc: &mut Scanner<R>,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
) -> Result<(), RecError> {
    if sc.peek()? != Some(b'[') {
        return Err(bad("expected a JSON array"));
    }
    sc.bump();
    em.context(b"[")?;
    let mut buf = Vec::new();
    array_records(sc, m, em, &mut buf)?;
    sc.expect_end()?;
    em.context(b"]")?;
    Ok(())
}

fn json_object<R: BufRead>(
    sc: &mut Scanner<R>,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
) -> Result<(), RecError> {
    if sc.peek()? != Some(b'{') {
        return Err(bad("expected a JSON object"));
    }
    let rule = m.rule;
    if rule.keys.is_empty() {
        // The object is one record.
        let mut buf = Vec::new();
        sc.value(Some(&mut buf), m.max_record)?;
        sc.expect_end()?;
        m.json_record(&buf, b"", em)?;
        return Ok(());
    }
    sc.bump();
    em.context(b"{")?;
    let mut members = 0u64;
    let mut found = false;
    let mut kraw = Vec::new();
    let mut buf = Vec::new();
    if sc.peek()? == Some(b'}') {
        sc.bump();
    } else {
        loop {
            let key = sc.key(&mut kraw)?;
            sc.colon()?;
            let sep: &[u8] = if members > 0 { b"," } else { b"" };
            if rule.keys.contains(&key) {
                found = true;
                match sc.peek()? {
                    Some(b'[') => {
                        sc.bump();
                        let mut head = sep.to_vec();
                        head.extend_from_slice(&kraw);
                        head.extend_from_slice(b":[");
                        em.context(&head)?;
                        array_records(sc, m, em, &mut buf)?;
                        em.context(b"]")?;
                        members += 1;
                    }
                    Some(b'{') => {
                        buf.clear();
                        sc.value(Some(&mut buf), m.max_record)?;
                        let mut head = sep.to_vec();
                        head.extend_from_slice(&kraw);
                        head.push(b':');
                        if m.json_record(&buf, &head, em)? {
                            members += 1;
                        }
                    }
                    _ => sc.value(None, usize::MAX)?,
                }
            } else if rule.context_keys.contains(&key) {
                buf.clear();
                sc.value(Some(&mut buf), m.max_record)?;
                let mut member = sep.to_vec();
                member.extend_from_slice(&kraw);
                member.push(b':');
                member.extend_from_slice(&buf);
                em.context(&member)?;
                members += 1;
            } else {
                sc.value(None, usize::MAX)?;
            }
            match sc.peek()? {
                Some(b',') => sc.bump(),
                Some(b'}') => {
                    sc.bump();
                    break;
                }
                Some(_) => return Err(bad("expected ',' or '}' in an object")),
                None => return Err(bad("JSON ends inside an object")),
            }
        }
    }
    sc.expect_end()?;
    if !found {
        return Err(bad(format!(
            "none of the keys {:?} is in the object",
            rule.keys
        )));
    }
    em.context(b"}")?;
    Ok(())
}

fn ndjson<R: BufRead>(
    r: &mut R,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
) -> Result<(), RecError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        // A line, bounded by the record limit.
        let mut end = false;
        loop {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                end = true;
                break;
            }
            let (take, nl) = match buf.iter().position(|b| *b == b'\n') {
                Some(p) => (p + 1, true),
                None => (buf.len(), false),
            };
            if line.len() + take > m.max_record {
                return Err(bad(format!("line longer than {} bytes", m.max_record)));
            }
            line.extend_from_slice(buf.get(..take).unwrap_or_default());
            r.consume(take);
            if nl {
                break;
            }
        }
        let text = line.trim_ascii();
        if !text.is_empty() {
            if !text.starts_with(b"{") {
                return Err(bad("a line is not a JSON object"));
            }
            let text = text.to_vec();
            let prefix: &[u8] = if em.records > 0 { b"\n" } else { b"" };
            m.json_record(&text, prefix, em)?;
        }
        if end {
            em.context(b"\n")?;
            return Ok(());
        }
    }
}

/// One CSV line, `\r\n`-terminated.
fn csv_line<'f>(fields: impl Iterator<Item = &'f [u8]>, quote_all: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let needs = quote_all || f.iter().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
        if needs {
            out.push(b'"');
            for &b in f {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(f);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn csv_error(e: csv::Error) -> RecError {
    if e.is_io_error() {
        match e.into_kind() {
            csv::ErrorKind::Io(io) => RecError::Io(io),
            other => bad(format!("{other:?}")),
        }
    } else {
        bad(format!("bad CSV: {e}"))
    }
}

fn csv_records<R: BufRead>(
    mut r: R,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
) -> Result<(), RecError> {
    let head = r.fill_buf()?;
    let bom = head.starts_with(&[0xEF, 0xBB, 0xBF]);
    if bom {
        r.consume(3);
    }
    let quote_all = r.fill_buf()?.first() == Some(&b'"');
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(r);
    let mut row = csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut row).map_err(csv_error)? {
        return Ok(());
    }
    let header: Vec<String> = row
        .iter()
        .map(|f| String::from_utf8(f.to_vec()).map_err(|_| bad("CSV header is not UTF-8")))
        .collect::<Result<_, _>>()?;
    let index = |name: &str| header.iter().position(|h| h == name);
    let needed: Vec<(String, usize)> = m
        .needed
        .iter()
        .filter_map(|n| index(n).map(|i| (n.clone(), i)))
        .collect();
    let out_cols: Vec<usize> = match &m.scope.fields {
        Fields::All => (0..header.len()).collect(),
        Fields::Only(names) => {
            let mut seen = HashSet::new();
            names
                .iter()
                .filter_map(|n| index(n))
                .filter(|i| seen.insert(*i))
                .collect()
        }
    };
    let mut head_line = if bom {
        vec![0xEF, 0xBB, 0xBF]
    } else {
        Vec::new()
    };
    head_line.extend(csv_line(
        out_cols
            .iter()
            .filter_map(|i| header.get(*i).map(|h| h.as_bytes())),
        quote_all,
    ));
    em.context(&head_line)?;
    while rdr.read_byte_record(&mut row).map_err(csv_error)? {
        let mut rec = Map::new();
        for (name, i) in &needed {
            let cell = row.get(*i).unwrap_or_default();
            let text = std::str::from_utf8(cell).map_err(|_| bad("CSV cell is not UTF-8"))?;
            rec.insert(name.clone(), Json::String(text.to_owned()));
        }
        m.seen += 1;
        if !m.matches(&rec) {
            continue;
        }
        m.collect_refs(&rec);
        let line = csv_line(
            out_cols.iter().map(|i| row.get(*i).unwrap_or_default()),
            quote_all,
        );
        em.record(b"", &line)?;
    }
    Ok(())
}

static NO_WORDS: ActivityHtmlWords = ActivityHtmlWords {
    months: Vec::new(),
    products: Vec::new(),
    locations: Vec::new(),
    details: Vec::new(),
};

/// Filters one file of `format` read from `r`.
pub(crate) fn filter<R: BufRead>(
    format: RecordFormat,
    r: R,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
) -> Result<(), RecError> {
    match format {
        RecordFormat::JsonArray | RecordFormat::JsonObject => {
            let mut sc = Scanner::new(r);
            sc.skip_bom()?;
            if format == RecordFormat::JsonArray {
                json_array(&mut sc, m, em)
            } else {
                json_object(&mut sc, m, em)
            }
        }
        RecordFormat::Ndjson => {
            let mut r = r;
            ndjson(&mut r, m, em)
        }
        RecordFormat::Csv => csv_records(r, m, em),
        RecordFormat::ActivityHtml => {
            let words = m.words.unwrap_or(&NO_WORDS);
            super::html::filter(r, words, m, em)
        }
        RecordFormat::Binary | RecordFormat::Unreadable => Err(bad("binary files have no records")),
    }
}

/// Whether the empty record `{}` matches the scope (what binary files
/// without records are judged by).
pub(crate) fn empty_record_matches(scope: &Scope) -> bool {
    scope
        .predicates
        .iter()
        .all(|p| matches!(p.holds(&Map::new(), None), Ok(true)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::catalog::ProviderCatalog;

    fn rule(extra: &str, format: &str) -> FileRule {
        let text = format!(
            "provider = \"p\"\nname = \"n\"\ndescription = \"d\"\n[[path]]\nid = \"a\"\ndescription = \"x\"\n[[path.files]]\npatterns = [\"*\"]\nformat = \"{format}\"\n{extra}\n"
        );
        let c = ProviderCatalog::parse("t", &text).unwrap();
        c.paths[0].files[0].clone()
    }

    struct VecSink(Vec<u8>, bool);
    impl Sink for VecSink {
        fn begin(&mut self) -> io::Result<()> {
            self.1 = true;
            Ok(())
        }
        fn write(&mut self, b: &[u8]) -> io::Result<()> {
            self.0.extend_from_slice(b);
            Ok(())
        }
    }

    fn run(rule: &FileRule, scope: &str, input: &str) -> Result<(String, u64, u64), RecError> {
        let scope = Scope::parse(scope).unwrap();
        let mut m = Matcher::new(&scope, rule, TextEncoding::Utf8, "d/f.json", 1 << 20);
        let mut sink = VecSink(Vec::new(), false);
        let mut em = Emitter::new(Some(&mut sink));
        filter(rule.format, input.as_bytes(), &mut m, &mut em)?;
        let n = em.records;
        Ok((String::from_utf8(sink.0).unwrap(), m.seen, n))
    }

    #[test]
    fn instant_matching_equals_the_reference() {
        let formats = [
            ("iso8601", ""),
            ("epoch_ms", ""),
            ("epoch_us", ""),
            ("epoch_s", ""),
            ("us_datetime", ""),
            ("dd_mon_yyyy", ""),
            ("iso8601", ", at = \"ts\""),
        ];
        let values = [
            r#""2021-06-01T00:00:00.123Z""#,
            r#""2021-06-01""#,
            r#""2021-06-01T02:00:00+02:00""#,
            r#""2021-06-01 and 2022-01-01""#,
            r#""06/01/2021 10:11:12 UTC""#,
            r#""01-Jun-2021""#,
            r#""1622505600000""#,
            r#""1622505600.5""#,
            "1622505600",
            "1622505600000",
            "1622505600000000",
            "-1",
            "253402300800",
            "253402300800000",
            r#""9999-12-31T23:59:59.999999999Z""#,
            r#""0000-01-01""#,
            r#""not a date""#,
            r#""2021""#,
            "null",
            "true",
            r#"{"ts":"2021-06-01T00:00:00Z"}"#,
            r#"{"ts":1622505600}"#,
            "[1]",
        ];
        let predicates = [
            "time>=2021-06-01",
            "time<2021-06-01T00:00:00.123Z",
            "time=2021-06-01",
            "time!=\"2021\"",
            "time>1622505600",
            "time<=\"1622505600000\"",
            "time>=x",
            "time<5",
            "has time",
            "time>=2021-01-01,title=a",
        ];
        for (format, extra) in formats {
            let r = rule(
                &format!("time = [{{ field = \"time\", format = \"{format}\"{extra} }}]"),
                "json_array",
            );
            for pred in predicates {
                let scope = Scope::parse(&format!("p.a[{pred}].*")).unwrap();
                let m = Matcher::new(&scope, &r, TextEncoding::Utf8, "d/f.json", 1 << 20);
                for v in values {
                    let rec: Record =
                        serde_json::from_str(&format!(r#"{{"title":"a","time":{v}}}"#)).unwrap();
                    assert_eq!(
                        m.matches(&rec),
                        m.matches_slow(&rec),
                        "{format}{extra} [{pred}] on {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn array_filters_and_keeps_bytes() {
        let r = rule(
            "time = [{ field = \"time\", format = \"iso8601\" }]",
            "json_array",
        );
        let input = r#" [ {"title":"a\u003db","time":"2020-01-01T00:00:00Z"} ,
            {"title":"b","time":"2021-06-01T00:00:00.123Z","x":[1,{"y":"]"}]}, {"title":"c"} ] "#;
        let (out, seen, n) = run(&r, "p.a[time>=2021-01-01].*", input).unwrap();
        assert_eq!((seen, n), (3, 1));
        assert_eq!(
            out,
            r#"[{"title":"b","time":"2021-06-01T00:00:00.123Z","x":[1,{"y":"]"}]}]"#
        );
        let (out, _, n) = run(&r, "p.a[has title].{time}", input).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            out,
            r#"[{"time":"2020-01-01T00:00:00Z"},{"time":"2021-06-01T00:00:00.123Z"},{}]"#
        );
        let (out, _, n) = run(&r, "p.a[title=zzz].*", input).unwrap();
        assert_eq!((out.as_str(), n), ("", 0));
        let (out, _, _) = run(&r, "p.a[title=\"a=b\"].*", input).unwrap();
        assert!(out.contains("a\\u003db"), "{out}");
    }

    #[test]
    fn object_keys_and_context() {
        let r = rule(
            "keys = [\"messages\"]\ncontext_keys = [\"title\"]\ntime = [{ field = \"timestamp_ms\", format = \"epoch_ms\" }]",
            "json_object",
        );
        let input = r#"{"participants":[{"name":"x"}],"messages":[{"timestamp_ms":1596910928321,"content":"hi"},{"timestamp_ms":1000}],"title":"T"}"#;
        let (out, _, n) = run(&r, "p.a[timestamp_ms>2020-01-01].*", input).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out,
            r#"{"messages":[{"timestamp_ms":1596910928321,"content":"hi"}],"title":"T"}"#
        );
        let (out, _, _) = run(&r, "p.a[timestamp_ms>2030-01-01].*", input).unwrap();
        assert_eq!(out, "");
        assert!(matches!(
            run(&r, "p.a.*", r#"{"other":[]}"#),
            Err(RecError::Format(_))
        ));
        assert!(matches!(
            run(&r, "p.a.*", r#"[{"a":1}]"#),
            Err(RecError::Format(_))
        ));
    }

    #[test]
    fn single_object_record_with_nested_time() {
        let r = rule(
            "time = [{ field = \"photoTakenTime\", at = \"timestamp\", format = \"epoch_s\" }]",
            "json_object",
        );
        let input =
            r#"{"title":"IMG_1.jpg","photoTakenTime":{"timestamp":"1688127753","formatted":"x"}}"#;
        assert_eq!(
            run(&r, "p.a[photoTakenTime>=2023-06-30].*", input)
                .unwrap()
                .2,
            1
        );
        assert_eq!(
            run(&r, "p.a[photoTakenTime<2023-06-30].*", input)
                .unwrap()
                .2,
            0
        );
        assert_eq!(
            run(&r, "p.a[photoTakenTime<2023-06-30T12:22:34Z].*", input)
                .unwrap()
                .2,
            1
        );
    }

    #[test]
    fn csv_rows() {
        let r = rule(
            "time = [{ field = \"Order Date\", format = \"us_datetime\" }]",
            "csv",
        );
        let input = "\u{feff}\"Website\",\"Order Date\",\"Address\"\r\n\"a.com\",\"2024-03-02T17:45:10.123Z and 2024-03-03T00:00:00Z\",\"1\nSt\"\r\n\"b.com\",\"11/11/2021 22:32:48 UTC\",\"x\"\r\n";
        let (out, seen, n) = run(&r, "p.a[\"Order Date\">=2022-01-01].*", input).unwrap();
        assert_eq!((seen, n), (2, 1));
        assert!(
            out.starts_with("\u{feff}\"Website\",\"Order Date\",\"Address\"\r\n\"a.com\""),
            "{out}"
        );
        let (out, _, n) = run(&r, "p.a[\"Order Date\"<2022-01-01].{Website}", input).unwrap();
        assert_eq!(n, 1);
        assert_eq!(out, "\u{feff}\"Website\"\r\n\"b.com\"\r\n");
        let r2 = rule(
            "time = [{ field = \"D\", format = \"dd_mon_yyyy\" }]",
            "csv",
        );
        let (_, _, n) = run(
            &r2,
            "p.a[D>2018-02-06].*",
            "D,T\n07-FEB-2018,x\n05-FEB-2018,y\n",
        )
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn ndjson_lines() {
        let r = rule("time = [{ field = \"t\", format = \"epoch_s\" }]", "ndjson");
        let input = "{\"t\":1}\n\n{\"t\":1700000000,\"a\":[1]}\r\n{\"t\":1800000000}";
        let (out, seen, n) = run(&r, "p.a[t>=2020-01-01].*", input).unwrap();
        assert_eq!((seen, n), (3, 2));
        assert_eq!(out, "{\"t\":1700000000,\"a\":[1]}\n{\"t\":1800000000}\n");
        assert!(matches!(
            run(&r, "p.a.*", "[1]\n"),
            Err(RecError::Format(_))
        ));
    }

    #[test]
    fn hostile_json_is_a_format_error() {
        let r = rule("", "json_array");
        for input in [
            "",
            "{}",
            "[1,2]",
            "[{\"a\":1}",
            "[{\"a\":1}] x",
            "[{\"a\":}]",
            "[{\"a\":1},]",
            "]",
            &"[".repeat(10_000),
            &format!("[{}]", "{\"a\":".repeat(600)),
        ] {
            assert!(
                matches!(run(&r, "p.a[has a].*", input), Err(RecError::Format(_))),
                "{input:.40}"
            );
        }
    }

    #[test]
    fn references_follow_projection() {
        let r = rule(
            "references = [{ field = \"audioFiles\", base = \"dir\" }]",
            "json_array",
        );
        let scope = Scope::parse("p.a[has title].*").unwrap();
        let input = r#"[{"title":"x","audioFiles":["A.mp3","../../etc/passwd"]}]"#;
        let mut m = Matcher::new(
            &scope,
            &r,
            TextEncoding::Utf8,
            "T/Assistant/MyActivity.json",
            1 << 20,
        );
        let mut em = Emitter::new(None);
        filter(r.format, input.as_bytes(), &mut m, &mut em).unwrap();
        assert_eq!(m.refs_exact, vec!["t/assistant/a.mp3".to_owned()]);
        let scope = Scope::parse("p.a[has title].{title}").unwrap();
        let mut m = Matcher::new(
            &scope,
            &r,
            TextEncoding::Utf8,
            "T/Assistant/MyActivity.json",
            1 << 20,
        );
        let mut em = Emitter::new(None);
        filter(r.format, input.as_bytes(), &mut m, &mut em).unwrap();
        assert!(m.refs_exact.is_empty());
    }

    #[test]
    fn mojibake_is_repaired_for_matching() {
        let r = rule("", "json_array");
        let scope = Scope::parse("p.a[title=\"Café\"].*").unwrap();
        let input = r#"[{"title":"Caf\u00c3\u00a9"}]"#;
        let mut m = Matcher::new(&scope, &r, TextEncoding::FacebookMojibake, "f", 1 << 20);
        let mut sink = VecSink(Vec::new(), false);
        let mut em = Emitter::new(Some(&mut sink));
        filter(r.format, input.as_bytes(), &mut m, &mut em).unwrap();
        assert_eq!(em.records, 1);
        assert_eq!(String::from_utf8(sink.0).unwrap(), input);
        assert_eq!(fix_string("Z\u{c3}\u{bc}rich"), "Zürich");
        assert_eq!(fix_string("\u{e9}t\u{e9}"), "\u{e9}t\u{e9}");
    }

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
