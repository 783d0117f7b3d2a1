//! The rules a catalog file is made of: record formats, time fields,
//! references, sidecars, file rules and paths.

use globset::GlobSet;
use serde::Deserialize;

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
    pub(super) matcher: GlobSet,
    #[serde(skip)]
    pub(super) excluder: GlobSet,
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
