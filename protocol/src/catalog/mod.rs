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
//!
//! `rules.rs` holds the rule types a catalog file is made of, `provider.rs`
//! one provider's catalog and its validation; the set of catalogs and
//! their loading are here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::scope::Scope;

mod provider;
mod rules;

pub use provider::ProviderCatalog;
pub use rules::{
    ActivityHtmlWords, CatalogPath, FileRule, RecordFormat, RefBase, Reference, Sidecar,
    SidecarStyle, TextEncoding, TimeField, TimeFormat,
};

/// The embedded catalogs, `(provider, TOML text)`.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("amazon", include_str!("../../catalog/amazon.toml")),
    ("facebook", include_str!("../../catalog/facebook.toml")),
    ("google", include_str!("../../catalog/google.toml")),
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
