//! What to generate: the provider, archive format, era, language and form
//! of the export, and its size.

use std::fmt;
use std::str::FromStr;

use anyhow::bail;

/// Which provider's export to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Google Takeout.
    Google,
    /// Facebook "Download your information" (JSON).
    Facebook,
    /// Amazon "Request My Data".
    Amazon,
}

impl Provider {
    /// The provider name as scopes write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::Facebook => "facebook",
            Provider::Amazon => "amazon",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Provider> {
        Ok(match s {
            "google" => Provider::Google,
            "facebook" => Provider::Facebook,
            "amazon" => Provider::Amazon,
            other => bail!("unknown provider {other:?} (google, facebook, amazon)"),
        })
    }
}

/// The container of each part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `.zip`: text deflated (level 6), media stored.
    Zip,
    /// `.tgz`: a gzip-compressed tar (GNU headers).
    TarGz,
}

impl Format {
    pub(crate) fn extension(self) -> &'static str {
        match self {
            Format::Zip => "zip",
            Format::TarGz => "tgz",
        }
    }
}

impl FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Format> {
        Ok(match s {
            "zip" => Format::Zip,
            "tgz" | "tar.gz" | "targz" => Format::TarGz,
            other => bail!("unknown format {other:?} (zip, tgz)"),
        })
    }
}

/// Which generation of the provider's layout (EXPORTS.md "eras").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Era {
    /// The layout of 2024–26 exports.
    #[default]
    Current,
    /// An older layout: Google ~2021 (`BrowserHistory.json`, `Location
    /// History/`, `timestampMs`, `.json` sidecars, `Takeout/YouTube/`),
    /// Facebook ~2019–20, Amazon ~2021–22 (`Title`, `YYYY-MM-DD`, US dates).
    Legacy,
}

impl FromStr for Era {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Era> {
        Ok(match s {
            "current" => Era::Current,
            "legacy" => Era::Legacy,
            other => bail!("unknown era {other:?} (current, legacy)"),
        })
    }
}

/// The account language of a Google Takeout: its folder and file names
/// (EXPORTS.md §0 "Localisation") and the dates of its HTML files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Language {
    /// English names (`My Activity/Search/MyActivity.json`).
    #[default]
    En,
    /// German (`Meine Aktivitäten/Suche/MeineAktivitäten.json`,
    /// `YouTube und YouTube Music/Verlauf/Wiedergabeverlauf.json`).
    De,
    /// Dutch (`YouTube en YouTube Music/geschiedenis/kijkgeschiedenis.json`;
    /// HTML dates `15 jun 2026, 20:30:41 CEST`).
    Nl,
}

impl FromStr for Language {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Language> {
        Ok(match s {
            "en" => Language::En,
            "de" => Language::De,
            "nl" => Language::Nl,
            other => bail!("unknown language {other:?} (en, de, nl)"),
        })
    }
}

/// The form of Google's My Activity and YouTube history files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ActivityForm {
    /// `MyActivity.json`, `watch-history.json` (chosen by the user).
    #[default]
    Json,
    /// `MyActivity.html`, `watch-history.html` (Takeout's default): the
    /// same records, with the date form chosen by the seed.
    Html,
}

impl FromStr for ActivityForm {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<ActivityForm> {
        Ok(match s {
            "json" => ActivityForm::Json,
            "html" => ActivityForm::Html,
            other => bail!("unknown activity form {other:?} (json, html)"),
        })
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The provider.
    pub provider: Provider,
    /// Zip or tar.gz parts.
    pub format: Format,
    /// Seed: the same options give the same bytes.
    pub seed: u64,
    /// Approximate total size of the files inside the parts, in bytes
    /// (small values still give every file a few records).
    pub target_bytes: u64,
    /// Share of `target_bytes` that is media (0.0–1.0).
    pub media_ratio: f64,
    /// Number of parts (at least 1); files are spread in order, so a record
    /// file and its media may land in different parts.
    pub parts: u32,
    /// Layout generation.
    pub era: Era,
    /// Google: the account language (folder and file names).
    pub language: Language,
    /// Google: the form of My Activity and YouTube history.
    pub activity: ActivityForm,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            provider: Provider::Google,
            format: Format::Zip,
            seed: 1,
            target_bytes: 1 << 20,
            media_ratio: 0.5,
            parts: 1,
            era: Era::Current,
            language: Language::En,
            activity: ActivityForm::Json,
        }
    }
}
