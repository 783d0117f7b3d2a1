//! The provider catalogs: which files of a dump make up each scope path,
//! how their records are read, and which field is their time.
//!
//! Catalogs are data (`protocol/catalog/<provider>.toml`), embedded at
//! build time; a directory named by `ALIAS_CATALOG_DIR` may hold files that
//! replace embedded ones (or add providers): `<dir>/<provider>.toml`.
//! Loading validates everything (patterns, path ids, format options), so a
//! bad catalog fails at start, never in the middle of a transfer.
//!
//! # File format
//!
//! ```toml
//! provider = "google"                 # [a-z0-9_]+, equal to the file stem
//! name = "Google Takeout"
//! description = "…"
//! text_encoding = "utf8"              # or "facebook_mojibake"
//!
//! [[path]]
//! id = "my_activity.search"           # dot-separated [A-Za-z0-9_]+ segments
//! description = "…"                   # shown on consent pages
//! notes = "…"                         # for maintainers: what it covers
//!
//! [[path.files]]
//! patterns = ["Takeout/My Activity/Search/MyActivity.json"]  # globs from the export root
//! exclude = []                        # globs that take a file back out
//! format = "json_array"               # json_array | json_object | ndjson | csv | activity_html | binary | unreadable
//! keys = []                           # json_object: keys holding the records
//! context_keys = []                   # json_object: keys copied as they are
//! time = [{ field = "time", format = "iso8601" }]  # optional `at = "sub.key"`
//! references = [{ field = "audioFiles", base = "dir" }]  # optional `key = "uri"`
//! referenced = false                  # binary: included when a kept record names it
//! sidecar = { style = "google_photos", edited_suffixes = ["-edited"] }  # binary
//! reason = "…"                        # unreadable: what the user should do
//!
//! [names]                             # localised names, for `<name>` in patterns
//! my_activity = ["My Activity", "Meine Aktivitäten"]
//!
//! [activity_html]                     # the words of Google's HTML My Activity
//! months = [["Jan", "Feb", …]]        # per language, 12 abbreviations each
//! products = ["Products:"]            # caption headings, per language
//! locations = ["Locations:"]
//! details = ["Details:"]
//! ```
//!
//! A pattern may name a list of `[names]` as `<name>`: it stands for each of
//! the list's entries (a pattern with two such lists of three names is six
//! patterns), so a folder localised in a new language is one more name.
//!
//! Globs use `globset` syntax with `*` not crossing `/` and `**/` for any
//! depth. A dump entry belongs to the first path (in file order) and, within
//! it, to the first rule whose patterns match it and whose excludes do not.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::scope::Scope;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

/// The embedded catalogs, `(provider, TOML text)`.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("amazon", include_str!("../catalog/amazon.toml")),
    ("facebook", include_str!("../catalog/facebook.toml")),
    ("google", include_str!("../catalog/google.toml")),
];

/// The environment variable naming a directory of catalog overrides.
pub const CATALOG_DIR_ENV: &str = "ALIAS_CATALOG_DIR";

/// A catalog that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A catalog file could not be read.
    #[error("catalog {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A catalog file is not valid TOML for the schema.
    #[error("catalog {file}: {message}")]
    Parse {
        /// The file (or embedded provider).
        file: String,
        /// The TOML error.
        message: String,
    },
    /// A catalog is well-formed but inconsistent.
    #[error("catalog {file}: {message}")]
    Invalid {
        /// The file (or embedded provider).
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// How the strings of a provider's JSON are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextEncoding {
    /// Plain UTF-8.
    #[default]
    Utf8,
    /// Facebook: every UTF-8 byte escaped as its own `\u00XX`. Predicates are
    /// matched against the repaired text; archives keep the dump's bytes.
    FacebookMojibake,
}

/// How the records of a file are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// A top-level JSON array of objects.
    JsonArray,
    /// A top-level JSON object: the records are the arrays (or single
    /// objects) under `keys`; without `keys` the object is one record.
    JsonObject,
    /// One JSON object per line.
    Ndjson,
    /// CSV with a header row (a UTF-8 BOM is allowed); each row is a record
    /// whose fields are the columns, as strings.
    Csv,
    /// Google's HTML My Activity (`MyActivity.html`, `watch-history.html`):
    /// one record per `div.outer-cell`, read into Google's JSON record shape
    /// (`header`, `title`, `titleUrl`, `subtitles`, `time`, `products`,
    /// `details`, `locationInfos`); archives hold those records as a JSON
    /// array, never the HTML.
    ActivityHtml,
    /// Not records: media, vCard, mbox… taken whole.
    Binary,
    /// Files in a form the bank cannot read (Facebook's HTML export): never
    /// copied; their presence is reported with the rule's `reason`.
    Unreadable,
}

impl RecordFormat {
    /// Whether files of this format hold records.
    pub fn has_records(self) -> bool {
        !matches!(self, RecordFormat::Binary | RecordFormat::Unreadable)
    }

    /// Whether the archive holds records re-encoded as JSON rather than
    /// the dump's bytes (so never a file copied whole).
    pub fn converted(self) -> bool {
        self == RecordFormat::ActivityHtml
    }

    /// The name used in catalogs and manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordFormat::JsonArray => "json_array",
            RecordFormat::JsonObject => "json_object",
            RecordFormat::Ndjson => "ndjson",
            RecordFormat::Csv => "csv",
            RecordFormat::ActivityHtml => "activity_html",
            RecordFormat::Binary => "binary",
            RecordFormat::Unreadable => "unreadable",
        }
    }
}

/// How a time field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// ISO 8601 / RFC 3339 text (a date alone is midnight UTC).
    Iso8601,
    /// Epoch seconds, a number or a decimal string.
    EpochS,
    /// Epoch milliseconds, a number or a decimal string.
    EpochMs,
    /// Epoch microseconds, a number or a decimal string.
    EpochUs,
    /// `MM/DD/YYYY HH:MM:SS UTC` (Amazon 2021), ISO text also accepted.
    UsDatetime,
    /// `DD-MON-YYYY` (Audible), e.g. `07-FEB-2018`.
    DdMonYyyy,
}

/// The field of a record that date predicates compare as an instant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeField {
    /// The top-level field predicates name.
    pub field: String,
    /// Where the time sits inside that field, dot-separated
    /// (`photoTakenTime` → `timestamp`), if not the field itself.
    #[serde(default)]
    pub at: Option<String>,
    /// How the value is written. Text joined by ` and ` (Amazon) is read up
    /// to the first ` and `.
    pub format: TimeFormat,
}

/// What a reference path is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefBase {
    /// The folder of the record file (Assistant `audioFiles`).
    Dir,
    /// The export root (Facebook `uri`); matched as a path suffix so that an
    /// extra top folder does not matter.
    Root,
}

/// Records of a rule name media files: a kept record keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// The top-level field holding the names; when the scope's fields leave
    /// it out, nothing is referenced (PROTOCOL §5.4).
    pub field: String,
    /// Only strings under this key, at any depth (`uri`); every string of
    /// the field when absent.
    #[serde(default)]
    pub key: Option<String>,
    /// What the names are relative to.
    pub base: RefBase,
}

/// How a binary file finds its sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SidecarStyle {
    /// Google Photos: `<file>.json` or `<file>.supplemental-metadata.json` in
    /// the same folder, the suffix or the whole name cut (to 51 characters),
    /// `IMG(1).jpg` ↔ `IMG.jpg(1).json` / `IMG.jpg.supplemental-metadata(1).json`,
    /// edited copies (`IMG-edited.jpg`) use the original's sidecar.
    GooglePhotos,
}

/// The sidecar rule of a binary file rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// The naming scheme.
    pub style: SidecarStyle,
    /// Suffixes of edited copies' stems, which share the original's sidecar.
    #[serde(default)]
    pub edited_suffixes: Vec<String>,
}

/// One rule: which dump entries, and how to read them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    /// Globs from the export root.
    pub patterns: Vec<String>,
    /// Globs that take matching entries back out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The record layout.
    pub format: RecordFormat,
    /// `json_object`: the keys whose values are the records.
    #[serde(default)]
    pub keys: Vec<String>,
    /// `json_object`: keys copied as they are into a filtered file (thread
    /// title, participants) when at least one record is kept.
    #[serde(default)]
    pub context_keys: Vec<String>,
    /// Time fields, in order of preference.
    #[serde(default)]
    pub time: Vec<TimeField>,
    /// Media named by the records.
    #[serde(default)]
    pub references: Vec<Reference>,
    /// `binary`: included when a kept record of the scope references it.
    #[serde(default)]
    pub referenced: bool,
    /// `binary`: follows the predicates through its sidecar record.
    #[serde(default)]
    pub sidecar: Option<Sidecar>,
    /// `unreadable`: what the user is told (manifest, transfer notes,
    /// consent page), e.g. "request it again in JSON".
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(skip)]
    matcher: GlobSet,
    #[serde(skip)]
    excluder: GlobSet,
}

impl FileRule {
    /// Whether `entry` (a normalised dump path) belongs to this rule.
    pub fn matches(&self, entry: &str) -> bool {
        self.matcher.is_match(entry) && !self.excluder.is_match(entry)
    }

    /// The time field whose name is `field`, if declared.
    pub fn time_field(&self, field: &str) -> Option<&TimeField> {
        self.time.iter().find(|t| t.field == field)
    }
}

/// A path of a provider's catalog, what a scope's `path` selects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogPath {
    /// Dot-separated id, e.g. `my_activity.search`.
    pub id: String,
    /// Human description, for consent pages and manifests.
    pub description: String,
    /// What the path covers (eras, variants), for maintainers.
    #[serde(default)]
    pub notes: String,
    /// Its file rules.
    pub files: Vec<FileRule>,
}

impl CatalogPath {
    /// The first rule that `entry` belongs to.
    pub fn rule_for(&self, entry: &str) -> Option<(usize, &FileRule)> {
        self.files
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(entry))
    }
}

/// The words of Google's HTML My Activity in the languages a catalog knows:
/// month abbreviations of its dates and headings of its caption cells.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityHtmlWords {
    /// Per language, the twelve month abbreviations (compared without case
    /// and without a trailing dot).
    #[serde(default)]
    pub months: Vec<Vec<String>>,
    /// Headings of the products list (`Products:`).
    #[serde(default)]
    pub products: Vec<String>,
    /// Headings of the locations list (`Locations:`).
    #[serde(default)]
    pub locations: Vec<String>,
    /// Headings of the details list (`Details:`).
    #[serde(default)]
    pub details: Vec<String>,
}

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

/// All provider catalogs.
#[derive(Debug, Clone)]
pub struct Catalog {
    providers: BTreeMap<String, ProviderCatalog>,
}

impl Catalog {
    /// No catalog at all: every scope selects nothing.
    pub fn empty() -> Catalog {
        Catalog {
            providers: BTreeMap::new(),
        }
    }

    /// The embedded catalogs.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        Catalog::from_sources(
            EMBEDDED
                .iter()
                .map(|(p, t)| (format!("embedded {p}.toml"), *t)),
        )
    }

    /// Catalogs from `(origin, TOML text)` pairs; a later provider replaces an
    /// earlier one.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (String, &'a str)>,
    ) -> Result<Catalog, CatalogError> {
        let mut providers = BTreeMap::new();
        for (origin, text) in sources {
            let cat = ProviderCatalog::parse(&origin, text)?;
            providers.insert(cat.provider.clone(), cat);
        }
        Ok(Catalog { providers })
    }

    /// The embedded catalogs, each replaced by `<dir>/<provider>.toml` when
    /// that file exists; other `*.toml` files of `dir` add providers.
    pub fn load(dir: Option<&Path>) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::embedded()?;
        let Some(dir) = dir else {
            return Ok(catalog);
        };
        let read_err = |file: &Path, source| CatalogError::Read {
            file: file.display().to_string(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| read_err(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| read_err(&file, e))?;
            let origin = file.display().to_string();
            let cat = ProviderCatalog::parse(&origin, &text)?;
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if stem != cat.provider {
                return Err(CatalogError::Invalid {
                    file: origin,
                    message: format!("file name must be the provider's: {}.toml", cat.provider),
                });
            }
            catalog.providers.insert(cat.provider.clone(), cat);
        }
        Ok(catalog)
    }

    /// [`Catalog::load`] with the directory of `ALIAS_CATALOG_DIR`, if set
    /// and not empty.
    pub fn from_env() -> Result<Catalog, CatalogError> {
        match std::env::var_os(CATALOG_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Catalog::load(Some(Path::new(&dir))),
            _ => Catalog::load(None),
        }
    }

    /// A provider's catalog.
    pub fn provider(&self, provider: &str) -> Option<&ProviderCatalog> {
        self.providers.get(provider)
    }

    /// Every provider catalog, by name.
    pub fn providers(&self) -> impl Iterator<Item = &ProviderCatalog> {
        self.providers.values()
    }

    /// The catalog paths a scope selects ([`Scope::selects_path`]), in
    /// catalog order; empty when the provider is unknown.
    pub fn paths_for(&self, scope: &Scope) -> Vec<&CatalogPath> {
        self.provider(&scope.provider)
            .map(|p| {
                p.paths
                    .iter()
                    .filter(|c| scope.selects_path(&c.id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The human description of a path.
    pub fn describe(&self, provider: &str, path: &str) -> Option<&str> {
        self.provider(provider)?
            .path(path)
            .map(|p| p.description.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalogs_load() {
        let c = Catalog::embedded().unwrap();
        let google = c.provider("google").unwrap();
        for id in [
            "my_activity.search",
            "my_activity.assistant",
            "my_activity.youtube",
            "youtube.watch_history",
            "youtube.search_history",
            "chrome.history",
            "location_history",
            "photos",
            "contacts",
            "mail",
        ] {
            assert!(google.path(id).is_some(), "google {id}");
        }
        let fb = c.provider("facebook").unwrap();
        for id in [
            "posts",
            "comments",
            "likes_and_reactions",
            "friends",
            "messages",
            "photos_and_videos",
            "profile_information",
        ] {
            assert!(fb.path(id).is_some(), "facebook {id}");
        }
        let amazon = c.provider("amazon").unwrap();
        for id in [
            "retail.order_history",
            "digital.orders",
            "alexa.voice_history",
            "audible.library",
        ] {
            assert!(amazon.path(id).is_some(), "amazon {id}");
        }
    }

    #[test]
    fn paths_for_scopes() {
        let c = Catalog::embedded().unwrap();
        let s = Scope::parse("google.my_activity").unwrap();
        let ids: Vec<&str> = c.paths_for(&s).iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "my_activity.search",
                "my_activity.assistant",
                "my_activity.youtube"
            ]
        );
        assert_eq!(c.paths_for(&Scope::parse("google.*").unwrap()).len(), 10);
        assert!(c
            .paths_for(&Scope::parse("google.my_act").unwrap())
            .is_empty());
        assert!(c.paths_for(&Scope::parse("nobody.x").unwrap()).is_empty());
        assert!(c.describe("google", "photos").is_some());
        assert!(c.describe("google", "nope").is_none());
    }

    #[test]
    fn rules_match_entries() {
        let c = Catalog::embedded().unwrap();
        let g = c.provider("google").unwrap();
        let photos = g.path("photos").unwrap();
        let (_, r) = photos
            .rule_for("Takeout/Google Photos/Photos from 2020/IMG_1.jpg")
            .unwrap();
        assert_eq!(r.format, RecordFormat::Binary);
        let (_, r) = photos
            .rule_for("Takeout/Google Photos/Photos from 2020/IMG_1.jpg.json")
            .unwrap();
        assert_eq!(r.format, RecordFormat::JsonObject);
        let chrome = g.path("chrome.history").unwrap();
        for name in [
            "Takeout/Chrome/BrowserHistory.json",
            "Takeout/Chrome/History.json",
        ] {
            assert!(chrome.rule_for(name).is_some(), "{name}");
        }
        assert!(chrome.rule_for("Takeout/Chrome/Bookmarks.html").is_none());
    }

    fn one(text: &str) -> Result<ProviderCatalog, CatalogError> {
        ProviderCatalog::parse("test", text)
    }

    #[test]
    fn bad_catalogs_are_refused() {
        let head = "provider = \"p\"\nname = \"n\"\ndescription = \"d\"\n";
        let ok = format!(
            "{head}[[path]]\nid = \"a.b\"\ndescription = \"x\"\n[[path.files]]\npatterns = [\"x/*.json\"]\nformat = \"json_array\"\n"
        );
        assert!(one(&ok).is_ok());
        for (bad, why) in [
            (ok.replace("x/*.json", "x/[.json"), "bad glob"),
            (ok.replace("x/*.json", "/abs/*.json"), "absolute"),
            (ok.replace("x/*.json", "../x"), "dotdot"),
            (ok.replace("a.b", "a..b"), "bad id"),
            (ok.replace("json_array", "yaml"), "unknown format"),
            (
                ok.replace("provider = \"p\"", "provider = \"P\""),
                "bad provider",
            ),
            (format!("{ok}extra = 1\n"), "unknown key"),
            (
                ok.replace(
                    "format = \"json_array\"",
                    "format = \"binary\"\nreferenced = true",
                ),
                "referenced without references",
            ),
            (
                ok.replace(
                    "format = \"json_array\"",
                    "format = \"csv\"\nkeys = [\"a\"]",
                ),
                "keys on csv",
            ),
        ] {
            assert!(one(&bad).is_err(), "{why}");
        }
    }

    #[test]
    fn names_expand_and_unreadable_rules_need_a_reason() {
        let head = "provider = \"p\"\nname = \"n\"\ndescription = \"d\"\n[names]\nf = [\"A\", \"B b\"]\ng = [\"x\", \"y\"]\n";
        let ok = format!(
            "{head}[[path]]\nid = \"a\"\ndescription = \"x\"\n[[path.files]]\npatterns = [\"<f>/<g>.json\"]\nformat = \"json_array\"\n[[path.files]]\npatterns = [\"<f>/*.html\"]\nformat = \"unreadable\"\nreason = \"ask for JSON\"\n"
        );
        let c = one(&ok).unwrap();
        let rules = &c.paths[0].files;
        assert_eq!(rules[0].patterns.len(), 4);
        for name in ["A/x.json", "A/y.json", "B b/x.json", "B b/y.json"] {
            assert_eq!(c.paths[0].rule_for(name).map(|(i, _)| i), Some(0), "{name}");
        }
        assert!(c.paths[0].rule_for("C/x.json").is_none());
        let (_, r) = c.paths[0].rule_for("B b/page.html").unwrap();
        assert_eq!(r.format, RecordFormat::Unreadable);
        assert!(!r.format.has_records());
        for (bad, why) in [
            (ok.replace("<g>", "<h>"), "unknown name list"),
            (ok.replace("<g>", "<g"), "unclosed"),
            (ok.replace("reason = \"ask for JSON\"\n", ""), "no reason"),
            (ok.replace("\"y\"]", "\"y*\"]"), "glob in a name"),
            (ok.replace("\"y\"]", "\"y/z\"]"), "slash in a name"),
            (
                ok.replace(
                    "format = \"json_array\"",
                    "format = \"json_array\"\nreason = \"r\"",
                ),
                "reason on a record rule",
            ),
            (
                ok.replace("format = \"json_array\"", "format = \"activity_html\""),
                "activity_html without months",
            ),
        ] {
            assert!(one(&bad).is_err(), "{why}");
        }
        let months = "[activity_html]\nmonths = [[\"a\",\"b\"]]\n";
        let short = ok.replace("[[path]]", &format!("{months}[[path]]"));
        assert!(one(&short).is_err(), "11 months short");
    }

    #[test]
    fn directory_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let text = "provider = \"google\"\nname = \"n\"\ndescription = \"d\"\n[[path]]\nid = \"only\"\ndescription = \"x\"\n[[path.files]]\npatterns = [\"a\"]\nformat = \"binary\"\n";
        std::fs::write(dir.path().join("google.toml"), text).unwrap();
        let c = Catalog::load(Some(dir.path())).unwrap();
        assert_eq!(c.provider("google").unwrap().paths.len(), 1);
        assert!(c.provider("facebook").is_some());
        std::fs::write(dir.path().join("other.toml"), text).unwrap();
        assert!(Catalog::load(Some(dir.path())).is_err());
    }
}
