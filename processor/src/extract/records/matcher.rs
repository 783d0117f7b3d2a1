//! Matching: applying one scope to the records of one file (predicates,
//! projection, references, mojibake repair).

use std::borrow::Cow;
#[cfg(test)]
use std::fmt;

use protocol::scope::{instant, Fields, Op, Record, Scope};
#[cfg(test)]
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value as Json};

use crate::extract::catalog::{ActivityHtmlWords, FileRule, RefBase, TextEncoding};
use crate::extract::source::check_name;

use super::onepass::{self, Span, Stop};
#[cfg(test)]
use super::time::time_value;
use super::time::{representable, time_nanos};
use super::{bad, Emitter, RecError};

/// Applies one scope to the records of one file of one rule.
pub(crate) struct Matcher<'a> {
    pub(super) scope: &'a Scope,
    pub(super) rule: &'a FileRule,
    pub(super) mojibake: bool,
    /// The fields a record is parsed for (a handful: a list is faster to
    /// search than a hash set).
    pub(super) needed: Vec<String>,
    /// Per predicate: the instant of its value when it compares a time field
    /// of the rule as an instant (computed once, not per record).
    pub(super) instants: Vec<Option<i128>>,
    /// The folder of the file, for `base = "dir"` references.
    pub(super) dir: String,
    pub(super) max_record: usize,
    pub(super) words: Option<&'a ActivityHtmlWords>,
    /// Records read.
    pub(crate) seen: u64,
    /// Lower-case full paths referenced by kept records (`base = "dir"`).
    pub(crate) refs_exact: Vec<String>,
    /// Lower-case paths from the export root (`base = "root"`), matched as
    /// path suffixes.
    pub(crate) refs_root: Vec<String>,
    /// Where the needed values of the record being read are (reused).
    spans: Vec<Span>,
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
            spans: Vec::new(),
        }
    }

    /// The words of HTML My Activity files (the provider catalog's).
    pub(crate) fn with_words(mut self, words: &'a ActivityHtmlWords) -> Self {
        self.words = Some(words);
        self
    }

    /// The largest record read into memory.
    pub(in crate::extract) fn max_record(&self) -> usize {
        self.max_record
    }

    pub(super) fn project_all(&self) -> bool {
        self.scope.fields == Fields::All
    }

    /// Parses a record's needed fields; the bytes must be one JSON object
    /// (whitespace may follow). One pass checks the whole record and finds
    /// the needed values, which alone are then parsed.
    pub(super) fn parse(&mut self, raw: &[u8]) -> Result<Record, RecError> {
        let end = match onepass::record(raw, &self.needed, &mut self.spans) {
            Ok(end) => end,
            Err(Stop::Incomplete) => return Err(bad("bad record: the record ends early")),
            Err(Stop::Bad(why)) => return Err(bad(format!("bad record: {why}"))),
        };
        if !raw.get(end..).unwrap_or_default().trim_ascii().is_empty() {
            return Err(bad("bad record: data after the record"));
        }
        self.fields(raw)
    }

    /// The record of the needed values found by the last pass over `raw`.
    fn fields(&self, raw: &[u8]) -> Result<Record, RecError> {
        let mut rec = Map::new();
        for &(field, start, end) in &self.spans {
            let (Some(name), Some(text)) = (self.needed.get(field), raw.get(start..end)) else {
                continue;
            };
            let v: Json =
                serde_json::from_slice(text).map_err(|e| bad(format!("bad record: {e}")))?;
            rec.insert(name.clone(), v);
        }
        Ok(rec)
    }

    /// The former two-pass parse (serde over the bytes the scanner found),
    /// the reference of the one-pass parse in the tests.
    #[cfg(test)]
    pub(super) fn parse_slow(&self, raw: &[u8]) -> Result<Record, RecError> {
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
    pub(super) fn record_instant(&self, rec: &Record, field: &str) -> Option<i128> {
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
    pub(super) fn matches_slow(&self, rec: &Record) -> bool {
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
    pub(super) fn collect_refs(&mut self, rec: &Record) {
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
    pub(in crate::extract) fn json_record(
        &mut self,
        raw: &[u8],
        prefix: &[u8],
        em: &mut Emitter<'_>,
    ) -> Result<bool, RecError> {
        let rec = self.parse(raw)?;
        self.keep(rec, raw, prefix, em)
    }

    /// Handles the record at the start of `avail` (a reader's buffer) in
    /// place: the kept flag and the record's length, or `None` when the
    /// record goes on past `avail`.
    pub(super) fn json_record_at(
        &mut self,
        avail: &[u8],
        prefix: &[u8],
        em: &mut Emitter<'_>,
    ) -> Result<Option<(bool, usize)>, RecError> {
        let end = match onepass::record(avail, &self.needed, &mut self.spans) {
            Ok(end) => end,
            Err(Stop::Incomplete) if avail.len() <= self.max_record => return Ok(None),
            Err(Stop::Incomplete) => 0,
            Err(Stop::Bad(why)) => return Err(bad(format!("bad record: {why}"))),
        };
        if end == 0 || end > self.max_record {
            return Err(bad(format!(
                "record larger than {} bytes (limit max_record_bytes)",
                self.max_record
            )));
        }
        let raw = avail.get(..end).unwrap_or_default();
        let rec = self.fields(raw)?;
        Ok(Some((self.keep(rec, raw, prefix, em)?, end)))
    }

    fn keep(
        &mut self,
        rec: Record,
        raw: &[u8],
        prefix: &[u8],
        em: &mut Emitter<'_>,
    ) -> Result<bool, RecError> {
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

pub(super) fn fix_string(s: &str) -> String {
    if s.is_ascii() || s.chars().any(|c| u32::from(c) > 0xFF) {
        return s.to_owned();
    }
    let bytes: Vec<u8> = s.chars().map(|c| u32::from(c) as u8).collect();
    String::from_utf8(bytes).unwrap_or_else(|_| s.to_owned())
}

/// Reads only the `needed` fields of a JSON object.
#[cfg(test)]
struct Partial<'n>(&'n [String]);

#[cfg(test)]
impl<'de> DeserializeSeed<'de> for Partial<'_> {
    type Value = Record;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Record, D::Error> {
        d.deserialize_map(self)
    }
}

#[cfg(test)]
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
