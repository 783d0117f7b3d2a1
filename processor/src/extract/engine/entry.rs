//! One entry into one scope archive: whole copies and filtered records.

use std::io::{self, BufReader};

use crate::extract::catalog::RecordFormat;
use crate::extract::ExtractError;

use crate::extract::archive::{name_digest, EntrySink, OutEntry, Pending};
use crate::extract::records::{Emitter, Matcher, RecError};

use super::{out_name, read_error, EntryData, Env, Job, MarkedSink, ReadFailed, ReadMarked, Work};
use crate::extract::records;
use crate::extract::DumpSource;

impl Work {
    /// Writes one selected entry into one scope's archive.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_entry(
        &self,
        env: &mut Env<'_>,
        job: &mut Job<'_>,
        d: &DumpSource,
        name: &str,
        size: u64,
        pi: usize,
        ri: usize,
        data: &mut dyn EntryData,
        decided: bool,
    ) -> Result<(), ExtractError> {
        let Some(rule) = job.rule(pi, ri) else {
            return Ok(());
        };
        let format = rule.format;
        if format == RecordFormat::Unreadable {
            let reason = rule.reason.clone().unwrap_or_default();
            job.note_unreadable(pi, name, &reason);
            job.skip(&d.name, name, pi, reason);
            return Ok(());
        }
        let linked = rule.sidecar.is_some() || rule.referenced;
        let catalog_path = job.paths.get(pi).map(|p| p.id.clone()).unwrap_or_default();
        if job
            .archive
            .as_ref()
            .is_some_and(|a| a.has(&out_name(name, format)))
        {
            job.skip(&d.name, name, pi, "duplicate of an entry of the same name");
            return Ok(());
        }
        let entry = OutEntry {
            name: name.to_owned(),
            catalog_path,
            dump: d.name.clone(),
            records: None,
            size,
            pending: None,
            source_format: None,
        };
        let whole = if job.whole && !format.converted() {
            true
        } else if format.has_records() {
            false
        } else if linked && !decided {
            // Kept for now; decided when every record has been read.
            let entry = OutEntry {
                pending: Some(Pending { path: pi, rule: ri }),
                ..entry
            };
            return self.copy_whole(job, d, data, entry, size);
        } else if job.keep_media(pi, ri, name) {
            true
        } else {
            if !linked {
                job.skip(
                    &d.name,
                    name,
                    pi,
                    "not a record file: the scope's predicates exclude it",
                );
            }
            return Ok(());
        };
        if whole {
            return self.copy_whole(job, d, data, entry, size);
        }
        if decided && job.matched.get(&name_digest(name)) == Some(&false) {
            return Ok(());
        }
        self.filter_entry(env, job, d, name, size, pi, ri, data, true)
    }

    pub(super) fn copy_whole(
        &self,
        job: &mut Job<'_>,
        d: &DumpSource,
        data: &mut dyn EntryData,
        entry: OutEntry,
        size: u64,
    ) -> Result<(), ExtractError> {
        let Some(archive) = job.archive.as_mut() else {
            return Ok(());
        };
        if data
            .raw_copy(archive, &entry)
            .map_err(|e| read_error(&d.name, e))?
        {
            return Ok(());
        }
        let mut r = data.open().map_err(|e| read_error(&d.name, e))?;
        let mut marked = ReadMarked(&mut r);
        archive
            .copy_whole(&mut marked, entry, size > (3 << 30))
            .map_err(|e| {
                if e.get_ref().is_some_and(|x| x.is::<ReadFailed>()) {
                    let inner = e
                        .into_inner()
                        .and_then(|b| b.downcast::<ReadFailed>().ok())
                        .map(|r| r.0)
                        .unwrap_or_else(|| io::Error::other("read failed"));
                    read_error(&d.name, inner)
                } else {
                    ExtractError::Io(e)
                }
            })?;
        Ok(())
    }

    /// Reads a record file for one scope: writes the kept records when
    /// `write`, else only notes the decisions (matched, references).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn filter_entry(
        &self,
        env: &mut Env<'_>,
        job: &mut Job<'_>,
        d: &DumpSource,
        name: &str,
        size: u64,
        pi: usize,
        ri: usize,
        data: &mut dyn EntryData,
        write: bool,
    ) -> Result<(), ExtractError> {
        let paths = job.paths;
        let Some(rule) = paths.get(pi).and_then(|p| p.files.get(ri)) else {
            return Ok(());
        };
        let catalog_path = paths.get(pi).map(|p| p.id.clone()).unwrap_or_default();
        let mut matcher = Matcher::new(
            job.scope,
            rule,
            job.encoding,
            name,
            env.limits().max_record_bytes,
        )
        .with_words(job.words);
        let converted = rule.format.converted().then(|| rule.format.as_str());
        let reader = data.open().map_err(|e| read_error(&d.name, e))?;
        let reader = BufReader::with_capacity(256 << 10, reader);
        let mut archive = job.archive.take();
        let result;
        let (records, started);
        {
            let mut sink = archive.as_mut().filter(|_| write).map(|a| {
                MarkedSink(EntrySink {
                    archive: a,
                    entry: Some(OutEntry {
                        name: out_name(name, rule.format),
                        catalog_path,
                        dump: d.name.clone(),
                        records: None,
                        size: 0,
                        pending: None,
                        source_format: converted.map(|f| (name.to_owned(), f.to_owned())),
                    }),
                    large: size > (3 << 30),
                })
            });
            let mut em = Emitter::new(sink.as_mut().map(|s| s as &mut dyn records::Sink));
            result = records::filter(rule.format, reader, &mut matcher, &mut em);
            records = em.records;
            started = em.started();
        }
        let outcome = match result {
            Ok(()) => {
                if started && write {
                    if let Some(a) = archive.as_mut() {
                        a.end(Some(records)).map_err(ExtractError::Io)?;
                    }
                }
                job.matched.insert(name_digest(name), records > 0);
                job.refs_exact.extend(matcher.refs_exact);
                job.refs_root.extend(matcher.refs_root);
                Ok(())
            }
            Err(RecError::Format(reason)) => {
                if started && write {
                    if let Some(a) = archive.as_mut() {
                        a.abort()?;
                    }
                }
                job.matched.insert(name_digest(name), false);
                if write {
                    let reason = format!(
                        "not the {} the catalog expects: {reason}",
                        rule.format.as_str()
                    );
                    if rule.format.converted() {
                        // Nothing of the file reaches the client: told.
                        job.note_unreadable(pi, name, &reason);
                    }
                    job.skip(&d.name, name, pi, reason);
                }
                Ok(())
            }
            Err(RecError::Io(e)) => Err(read_error(&d.name, e)),
        };
        job.archive = archive;
        let _ = env;
        outcome
    }
}
