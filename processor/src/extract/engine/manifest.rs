//! Finishing a scope archive: pending media decided, manifest written.

use protocol::anychain::{b64u_encode, Value};
use protocol::scope::Scope;
use serde_json::{json, Value as Json};

use crate::extract::catalog::TextEncoding;
use crate::extract::ExtractError;

use super::{Finished, Job, Work};
use crate::extract::archive::OutEntry;

impl Work {
    /// Finishes a scope archive: pending media decided, manifest written.
    pub(super) fn finish(&self, job: &mut Job<'_>) -> Result<Finished, ExtractError> {
        let Some(archive) = job.archive.take() else {
            return Err(ExtractError::Internal("archive finished twice".into()));
        };
        let file = archive.file.clone();
        let job_ref: &Job<'_> = job;
        let keep = |e: &OutEntry| match e.pending {
            Some(p) => job_ref.keep_media(p.path, p.rule, &e.name),
            None => true,
        };
        let head = self.manifest_head(job_ref);
        let (output, totals) = archive
            .finish(keep, &head)
            .map_err(|e| ExtractError::Archive {
                file: file.clone(),
                reason: e.to_string(),
            })?;
        Ok(Finished {
            file,
            scope_display: job.scope.display(),
            output,
            records: totals.records,
            files: totals.files,
            bytes: totals.bytes,
            skipped_more: job.skipped_more,
            skipped: job.skipped.clone(),
            unreadable: job.unreadable.iter().map(|(_, u)| u.clone()).collect(),
        })
    }

    /// The manifest's fields but `files` and `records` (the archive
    /// streams those from its log).
    pub(super) fn manifest_head(&self, job: &Job<'_>) -> serde_json::Map<String, Json> {
        let sources: Vec<Json> = self
            .dumps
            .iter()
            .filter(|d| d.provider == job.scope.provider)
            .map(|d| json!({"name": d.name, "size": d.size, "blake2b": b64u_encode(&d.blake2b)}))
            .collect();
        let paths: Vec<Json> = job
            .paths
            .iter()
            .map(|p| json!({"path": p.id, "description": p.description}))
            .collect();
        let mut notes = Vec::new();
        if job.encoding == TextEncoding::FacebookMojibake {
            notes.push("Strings are as Facebook writes them: every UTF-8 byte escaped as \\u00XX (decode each string as latin-1 bytes, then UTF-8). Predicates were matched on the repaired text.");
        }
        if !job.whole {
            notes.push("Filtered files hold the kept records, byte for byte unless projected; files with no kept record are left out.");
        }
        if job
            .paths
            .iter()
            .any(|p| p.files.iter().any(|r| r.format.converted()))
        {
            notes.push("Records read from Google's HTML My Activity are written as a JSON array of records in Google's JSON shape, in a file named as the HTML one with .json (source_entry and source_format in files say so); description, activityControls and media are not in the HTML.");
        }
        let m = json!({
            "format": "alias-bank.scope-archive/1",
            "scope": scope_json(job.scope),
            "scope_display": job.scope.display(),
            "provider": job.scope.provider,
            "paths": paths,
            "sources": sources,
            "skipped": job.skipped,
            "skipped_more": job.skipped_more,
            "unreadable": job.unreadable.iter().map(|(_, u)| u).collect::<Vec<_>>(),
            "notes": notes,
        });
        match m {
            Json::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    }
}

/// The object form of a scope as plain JSON.
pub(super) fn scope_json(scope: &Scope) -> Json {
    fn plain(v: &Value) -> Json {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
            Value::String(s) => Json::String(s.clone()),
            Value::List(items) => Json::Array(items.iter().map(plain).collect()),
            Value::Dict(d) => {
                Json::Object(d.iter().map(|(k, v)| (k.to_owned(), plain(v))).collect())
            }
            _ => Json::Null,
        }
    }
    plain(&scope.to_value())
}
