//! Previews: what a transfer would give a client, computed by a dry run of
//! the build. [`preview_archives`] runs every pass of
//! [`build_archives`](super::build_archives) over the same dumps and
//! scopes (the same part sniffing, limits, filtering, media decisions and
//! skips) with archives that discard their bytes: nothing is uploaded and
//! no archive is written to disk (only the entry log and, for a tar entry
//! that several scopes share, its spool, as in a build).

use protocol::scope::Scope;
use runtime::storage::Storage;

use super::archive::Output;
use super::{run_work, time_limited, BuildOptions, Catalog, DumpSource, ExtractError, Unreadable};

/// What the archive of one scope would hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePreview {
    /// The archive's file name (as the build would name it).
    pub file: String,
    /// The scope in display form.
    pub scope_display: String,
    /// Data files the archive would hold (the manifest excluded).
    pub files: u64,
    /// Records of the filtered files (files taken whole are not counted,
    /// as in the build's manifest).
    pub records: u64,
    /// Bytes of the data files, uncompressed.
    pub bytes: u64,
    /// The first file names, in the archive's order (each cut to 200
    /// characters).
    pub first_files: Vec<String>,
    /// Up to 3 records as the client would receive them (each cut to 400
    /// characters; not escaped: whoever shows them escapes them).
    pub samples: Vec<String>,
    /// Files selected but left out.
    pub skipped: u64,
    /// Files the bank could not read, per catalog path.
    pub unreadable: Vec<Unreadable>,
}

/// Computes, for each scope, what [`build_archives`](super::build_archives)
/// would put in its archive, without writing any archive. Fails as the
/// build would (hostile or changed dumps, unknown scopes, limits,
/// [`Limits::max_duration`](super::Limits::max_duration)).
pub async fn preview_archives(
    storage: &Storage,
    catalog: &Catalog,
    dumps: &[DumpSource],
    scopes: &[Scope],
    options: &BuildOptions,
) -> Result<Vec<ScopePreview>, ExtractError> {
    let run = async {
        run_work(storage, catalog, dumps, scopes, options, true)
            .await?
            .collect()
            .await
    };
    let finished = time_limited(options, run).await?;
    finished
        .into_iter()
        .map(|f| {
            let Output::Dry {
                first_files,
                samples,
            } = f.output
            else {
                return Err(ExtractError::Internal("a dry run wrote an archive".into()));
            };
            Ok(ScopePreview {
                file: f.file,
                scope_display: f.scope_display,
                files: f.files,
                records: f.records,
                bytes: f.bytes,
                first_files,
                samples,
                skipped: f.skipped.len() as u64 + f.skipped_more,
                unreadable: f.unreadable,
            })
        })
        .collect()
}
