//! Errors of the extraction, and what a manifest says about skipped files.

use std::io;

use runtime::storage::StorageError;
use serde::Serialize;

use super::catalog::CatalogError;

/// Why building the archives of a transfer failed. Every variant ends the
/// transfer failed; [`ExtractError::code`] is a stable machine-readable code.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The catalog could not be loaded or is invalid.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A scope names a provider the catalog does not know.
    #[error("no catalog for provider {provider:?}")]
    UnknownProvider {
        /// The provider of the scope.
        provider: String,
    },
    /// A scope's path selects no path of its provider's catalog.
    #[error("scope {scope} selects no catalog path of provider {provider:?}")]
    UnknownPath {
        /// The scope, in display form.
        scope: String,
        /// Its provider.
        provider: String,
    },
    /// No dump was given for a provider that a scope needs.
    #[error("no dump of provider {provider:?} was given")]
    NoDump {
        /// The provider.
        provider: String,
    },
    /// A dump is neither a zip nor a (gzip-compressed) tar.
    #[error("dump {dump}: unsupported format ({reason})")]
    UnsupportedDump {
        /// The dump's name.
        dump: String,
        /// What was found.
        reason: String,
    },
    /// A dump is truncated or corrupt (bad central directory, bad CRC, bad
    /// gzip stream, bad tar header…).
    #[error("dump {dump}: corrupt or truncated: {reason}")]
    CorruptDump {
        /// The dump's name.
        dump: String,
        /// What failed.
        reason: String,
    },
    /// A dump holds an entry that could escape or confuse: absolute path,
    /// `..`, drive letter, backslash, symlink or hard link, device…
    #[error("dump {dump}: unsafe entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The dump's name.
        dump: String,
        /// The entry name (cut to a readable length).
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A dump goes past a [`Limits`](super::Limits) value (zip bomb, too many
    /// entries…).
    #[error("dump {dump}: {reason}")]
    LimitExceeded {
        /// The dump's name.
        dump: String,
        /// Which limit, with the numbers.
        reason: String,
    },
    /// The stored dump does not have the size the caller announced.
    #[error("dump {dump}: stored size {actual} differs from the announced {expected}")]
    DumpChanged {
        /// The dump's name.
        dump: String,
        /// Announced size.
        expected: u64,
        /// Stored size.
        actual: u64,
    },
    /// Reading dumps or writing archives in storage failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Local I/O on the temporary archives failed (disk full…).
    #[error("local I/O: {0}")]
    Io(#[from] io::Error),
    /// Writing an archive failed.
    #[error("writing archive {file}: {reason}")]
    Archive {
        /// The archive's file name.
        file: String,
        /// What failed.
        reason: String,
    },
    /// The build took longer than [`Limits::max_duration`](super::Limits)
    /// (`ALIAS_JOB_TIMEOUT_SECS`).
    #[error("the build took longer than {secs} s (ALIAS_JOB_TIMEOUT_SECS)")]
    TimeLimit {
        /// The limit, in seconds.
        secs: u64,
    },
    /// The build was cancelled (its future dropped).
    #[error("cancelled")]
    Cancelled,
    /// A blocking task panicked or was aborted.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ExtractError {
    /// A stable code for the status API and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ExtractError::Catalog(_) => "catalog",
            ExtractError::UnknownProvider { .. } => "unknown_provider",
            ExtractError::UnknownPath { .. } => "unknown_path",
            ExtractError::NoDump { .. } => "no_dump",
            ExtractError::UnsupportedDump { .. } => "unsupported_dump",
            ExtractError::CorruptDump { .. } => "corrupt_dump",
            ExtractError::UnsafeEntry { .. } => "unsafe_entry",
            ExtractError::LimitExceeded { .. } => "limit_exceeded",
            ExtractError::DumpChanged { .. } => "dump_changed",
            ExtractError::Storage(_) => "storage",
            ExtractError::Io(_) => "io",
            ExtractError::Archive { .. } => "archive",
            ExtractError::TimeLimit { .. } => "time_limit",
            ExtractError::Cancelled => "cancelled",
            ExtractError::Internal(_) => "internal",
        }
    }

    /// Whether trying again later may succeed (storage or local I/O
    /// trouble), as opposed to a bad dump or request that will fail again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ExtractError::Storage(_)
                | ExtractError::Io(_)
                | ExtractError::Internal(_)
                | ExtractError::Cancelled
        )
    }
}

/// A dump file that was selected by a scope but left out of its archive,
/// and why (the manifest lists them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The dump (part) it is in.
    pub dump: String,
    /// The entry path inside the dump.
    pub entry: String,
    /// The catalog path that selected it.
    pub catalog_path: String,
    /// Why it was left out.
    pub reason: String,
}

/// Files of a catalog path that the bank could not read: a form it refuses
/// (Facebook's HTML export) or files that are not what the catalog
/// expects. Told to the user on the transfer, the dashboard and in the
/// manifest, so that a scope never ends as a silent empty archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// The catalog path whose files these are.
    pub catalog_path: String,
    /// How many files.
    pub files: u64,
    /// The first of them (dump entry path).
    pub example: String,
    /// What the user should know or do.
    pub reason: String,
}

impl Unreadable {
    /// The sentence a user reads on the transfer and the dashboard.
    pub fn note(&self, provider: &str) -> String {
        let files = if self.files == 1 {
            "1 file".to_owned()
        } else {
            format!("{} files", self.files)
        };
        format!(
            "{provider}.{}: {files} could not be read (e.g. {}): {}",
            self.catalog_path,
            shown(&self.example),
            self.reason
        )
    }
}

/// Cuts a hostile name to a readable length for messages.
pub(crate) fn shown(name: &str) -> String {
    const MAX: usize = 160;
    if name.chars().count() <= MAX {
        name.to_owned()
    } else {
        let mut s: String = name.chars().take(MAX).collect();
        s.push('…');
        s
    }
}
