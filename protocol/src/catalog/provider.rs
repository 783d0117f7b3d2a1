//! One provider's catalog: parsed from TOML and validated (patterns
//! compiled with their `<name>` lists expanded, path ids, format options).

use std::collections::{BTreeMap, HashSet};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use super::rules::{ActivityHtmlWords, CatalogPath, RecordFormat, TextEncoding};
use super::CatalogError;

/// The catalog of one provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderCatalog {
    /// Provider name as scopes write it.
    pub provider: String,
    /// Human name of the export.
    pub name: String,
    /// Human description of the export.
    pub description: String,
    /// String encoding of its JSON.
    #[serde(default)]
    pub text_encoding: TextEncoding,
    /// Localised folder and file names, for `<name>` in patterns.
    #[serde(default)]
    pub names: BTreeMap<String, Vec<String>>,
    /// The words of HTML My Activity files.
    #[serde(default)]
    pub activity_html: ActivityHtmlWords,
    /// Its paths, in order.
    #[serde(rename = "path")]
    pub paths: Vec<CatalogPath>,
}

impl ProviderCatalog {
    /// Reads and validates one catalog; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<ProviderCatalog, CatalogError> {
        let mut cat: ProviderCatalog = toml::from_str(text).map_err(|e| CatalogError::Parse {
            file: origin.to_owned(),
            message: e.to_string(),
        })?;
        cat.validate(origin)?;
        Ok(cat)
    }

    fn validate(&mut self, origin: &str) -> Result<(), CatalogError> {
        let invalid = |message: String| CatalogError::Invalid {
            file: origin.to_owned(),
            message,
        };
        if self.provider.is_empty()
            || !self
                .provider
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(invalid(format!(
                "provider {:?} is not a [a-z0-9_]+ name",
                self.provider
            )));
        }
        for (name, list) in &self.names {
            let bad_name = |n: &str| {
                n.is_empty() || n.contains(['/', '*', '?', '[', ']', '{', '}', '<', '>', '\\'])
            };
            if list.is_empty() || list.iter().any(|n| bad_name(n)) {
                return Err(invalid(format!(
                    "names.{name}: a non-empty list of names without '/', glob characters or '<>'"
                )));
            }
        }
        let words = &self.activity_html;
        if words.months.iter().any(|m| m.len() != 12) {
            return Err(invalid(
                "activity_html.months: each language lists 12 months".into(),
            ));
        }
        let has_html = self.paths.iter().any(|p| {
            p.files
                .iter()
                .any(|r| r.format == RecordFormat::ActivityHtml)
        });
        if has_html && words.months.is_empty() {
            return Err(invalid(
                "activity_html rules need activity_html.months".into(),
            ));
        }
        let names = self.names.clone();
        let mut ids = HashSet::new();
        for path in &mut self.paths {
            let id = path.id.clone();
            let segments_ok = !id.is_empty()
                && id.split('.').all(|s| {
                    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
            if !segments_ok {
                return Err(invalid(format!(
                    "path id {id:?} is not dot-separated [A-Za-z0-9_]+ segments"
                )));
            }
            if !ids.insert(id.clone()) {
                return Err(invalid(format!("path {id:?} is declared twice")));
            }
            if path.description.trim().is_empty() {
                return Err(invalid(format!("path {id:?} has no description")));
            }
            if path.files.is_empty() {
                return Err(invalid(format!("path {id:?} has no file rules")));
            }
            let has_refs = path.files.iter().any(|r| !r.references.is_empty());
            for (n, rule) in path.files.iter_mut().enumerate() {
                let here = |m: &str| invalid(format!("path {id:?} rule #{n}: {m}"));
                if rule.patterns.is_empty() {
                    return Err(here("no patterns"));
                }
                rule.patterns = expand(&rule.patterns, &names).map_err(|m| here(&m))?;
                rule.exclude = expand(&rule.exclude, &names).map_err(|m| here(&m))?;
                rule.matcher = compile(&rule.patterns).map_err(|m| here(&m))?;
                rule.excluder = compile(&rule.exclude).map_err(|m| here(&m))?;
                let unreadable = rule.format == RecordFormat::Unreadable;
                if unreadable != rule.reason.as_deref().is_some_and(|r| !r.trim().is_empty()) {
                    return Err(here("an unreadable rule, and only it, has a reason"));
                }
                let records = rule.format.has_records();
                if rule.format != RecordFormat::JsonObject
                    && !(rule.keys.is_empty() && rule.context_keys.is_empty())
                {
                    return Err(here("keys and context_keys are for json_object"));
                }
                if !records && (!rule.time.is_empty() || !rule.references.is_empty()) {
                    return Err(here("a binary rule has no records: no time or references"));
                }
                if (records || unreadable) && (rule.referenced || rule.sidecar.is_some()) {
                    return Err(here("referenced and sidecar are for binary rules"));
                }
                if rule.referenced && rule.sidecar.is_some() {
                    return Err(here("a binary rule is either referenced or has a sidecar"));
                }
                if rule.referenced && !has_refs {
                    return Err(here("referenced, but no rule of the path has references"));
                }
                for t in &rule.time {
                    if t.field.is_empty() || t.at.as_deref().is_some_and(str::is_empty) {
                        return Err(here("empty time field"));
                    }
                }
                for r in &rule.references {
                    if r.field.is_empty() || r.key.as_deref().is_some_and(str::is_empty) {
                        return Err(here("empty reference field"));
                    }
                }
            }
            if path.files.iter().any(|r| r.sidecar.is_some())
                && !path.files.iter().any(|r| r.format.has_records())
            {
                return Err(invalid(format!(
                    "path {id:?}: a sidecar rule needs a record rule for the sidecars"
                )));
            }
        }
        Ok(())
    }

    /// The path with this id.
    pub fn path(&self, id: &str) -> Option<&CatalogPath> {
        self.paths.iter().find(|p| p.id == id)
    }
}

/// Most patterns one pattern may expand to through `<name>` lists.
const MAX_EXPANSION: usize = 4096;

/// Replaces every `<name>` of the patterns by each entry of `names[name]`.
fn expand(
    patterns: &[String],
    names: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in patterns {
        let mut todo = vec![p.clone()];
        while let Some(p) = todo.pop() {
            let Some(start) = p.find('<') else {
                out.push(p);
                continue;
            };
            let Some(len) = p.get(start + 1..).and_then(|rest| rest.find('>')) else {
                return Err(format!("pattern {p:?}: '<' without '>'"));
            };
            let key = p.get(start + 1..start + 1 + len).unwrap_or_default();
            let list = names
                .get(key)
                .ok_or_else(|| format!("pattern {p:?} names <{key}>, which [names] lacks"))?;
            let (head, tail) = (
                p.get(..start).unwrap_or_default(),
                p.get(start + len + 2..).unwrap_or_default(),
            );
            for n in list {
                todo.push(format!("{head}{n}{tail}"));
            }
            if out.len() + todo.len() > MAX_EXPANSION {
                return Err(format!(
                    "pattern {p:?} expands to more than {MAX_EXPANSION}"
                ));
            }
        }
    }
    Ok(out)
}

fn compile(patterns: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        if p.starts_with('/') || p.contains('\\') || p.split('/').any(|s| s == "..") {
            return Err(format!(
                "pattern {p:?} must be relative, with '/' and no '..'"
            ));
        }
        let glob = GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("bad pattern {p:?}: {e}"))?;
        set.add(glob);
    }
    set.build().map_err(|e| format!("bad patterns: {e}"))
}
