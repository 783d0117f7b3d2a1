//! Zip parts: the checked central directory and the passes over it.

use std::collections::HashSet;
use std::io::{self, Read};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::extract::ExtractError;

use crate::extract::archive::{name_digest, OutEntry, ScopeArchive};
use crate::extract::source::{check_name, CountingReader, RangeReader};
use crate::extract::zipfmt::{CdEntry, CentralDirectory, EndRecord};

use super::{read_error, EntryData, Env, Job, Work};
use crate::extract::DumpSource;
use crate::extract::{error, zipfmt};

pub(super) struct ZipEntryData<'a> {
    pub(super) reader: &'a mut RangeReader,
    pub(super) entry: &'a CdEntry,
    /// Where the part's central directory starts (entry data ends before).
    pub(super) cd_offset: u64,
    pub(super) limit: Arc<AtomicU64>,
    pub(super) total_limit: u64,
}

impl<'a> ZipEntryData<'a> {
    /// Entry `entry` of a part read through `reader`, counted against the
    /// export's inflated bytes and limit.
    fn new(reader: &'a mut RangeReader, entry: &'a CdEntry, cd_offset: u64, env: &Env) -> Self {
        ZipEntryData {
            reader,
            entry,
            cd_offset,
            limit: env.inflated.clone(),
            total_limit: env.limits().max_total_uncompressed,
        }
    }
}

impl EntryData for ZipEntryData<'_> {
    fn open(&mut self) -> io::Result<Box<dyn Read + '_>> {
        let data = zipfmt::open_data(&mut *self.reader, self.entry, self.cd_offset)?;
        Ok(Box::new(CountingReader::new(
            data,
            self.entry.size,
            "entry larger than its declared size",
            self.limit.clone(),
            self.total_limit,
        )))
    }

    fn raw_copy(&mut self, archive: &mut ScopeArchive, entry: &OutEntry) -> io::Result<bool> {
        zipfmt::seek_data(&mut *self.reader, self.entry, self.cd_offset)?;
        archive.raw_copy(&mut *self.reader, self.entry, entry.clone())?;
        Ok(true)
    }
}

/// A zip part whose end record and central directory were checked.
pub(super) struct ZipPart<'d> {
    pub(super) d: &'d DumpSource,
    pub(super) end: EndRecord,
}

/// One entry of a pass over a zip part's central directory.
pub(super) struct PassEntry {
    /// Position in the central directory.
    pub(super) index: u64,
    /// The normalised name.
    pub(super) name: String,
    pub(super) cd: CdEntry,
}

impl Work {
    /// Opens a zip part: reads its end record, refuses it when the entries
    /// it announces pass `max_entries` (with those of the parts before it)
    /// before any entry is parsed, then checks every entry in one streaming
    /// pass: names, links, ratios, declared sizes (all parts together),
    /// overlaps; duplicate names (across parts) go to `dups`.
    pub(super) fn open_zip<'d>(
        &self,
        env: &mut Env<'_>,
        d: &'d DumpSource,
        part: usize,
        first: &mut HashSet<u64>,
        dups: &mut HashSet<(usize, u64)>,
    ) -> Result<ZipPart<'d>, ExtractError> {
        let corrupt = |reason: String| ExtractError::CorruptDump {
            dump: d.name.clone(),
            reason,
        };
        let limit_hit = |reason: String| ExtractError::LimitExceeded {
            dump: d.name.clone(),
            reason,
        };
        let limits = env.limits().clone();
        let mut data = self.reader(env, d)?;
        let end = zipfmt::read_end(&mut data, d.size).map_err(|e| read_error(&d.name, e))?;
        env.entries_seen = env.entries_seen.saturating_add(end.entries);
        if env.entries_seen > limits.max_entries {
            return Err(limit_hit(format!(
                "{} entries in the export, more than the limit of {} (ALIAS_MAX_ENTRIES)",
                env.entries_seen, limits.max_entries
            )));
        }
        let zp = ZipPart { d, end };
        // Spans in directory order; sorted only when that order is not
        // the physical one.
        let mut last_span = (0u64, 0u64);
        let mut unordered: Option<Vec<(u64, u64)>> = None;
        self.each_entry(env, &zp, |env, e| {
            let unsafe_entry = |reason: &'static str| ExtractError::UnsafeEntry {
                dump: d.name.clone(),
                entry: error::shown(&e.cd.name),
                reason,
            };
            if e.cd.is_symlink() {
                return Err(unsafe_entry("symbolic link"));
            }
            let (size, csize) = (e.cd.size, e.cd.csize);
            env.declared = env.declared.saturating_add(size);
            env.compressed = env.compressed.saturating_add(csize);
            if size > limits.ratio_min_size && size / csize.max(1) > limits.max_ratio {
                return Err(limit_hit(format!(
                    "entry {:?} expands {size} / {csize} bytes, past the ratio limit {} (ALIAS_MAX_RATIO; a zip bomb?)",
                    error::shown(&e.name),
                    limits.max_ratio
                )));
            }
            let span = e.cd.min_span();
            if span.1 > end.cd_offset {
                return Err(corrupt(format!(
                    "entry {:?} runs into the central directory",
                    error::shown(&e.name)
                )));
            }
            match unordered.as_mut() {
                Some(spans) => spans.push(span),
                None if span.0 >= last_span.1 => last_span = span,
                None if span.0 < last_span.0 => {
                    // Not in physical order: collect and sort at the end
                    // (the directory is read again for that).
                    unordered = Some(Vec::new());
                }
                None => {
                    return Err(limit_hit("entries overlap (a zip bomb's trick)".into()));
                }
            }
            if !first.insert(name_digest(&e.name)) {
                dups.insert((part, e.index));
            }
            Ok(())
        })?;
        if unordered.is_some() {
            let mut spans = Vec::new();
            self.each_entry(env, &zp, |_, e| {
                spans.push(e.cd.min_span());
                Ok(())
            })?;
            spans.sort_unstable();
            if spans.windows(2).any(|w| matches!(w, [a, b] if b.0 < a.1)) {
                return Err(limit_hit("entries overlap (a zip bomb's trick)".into()));
            }
        }
        if env.declared > limits.max_total_uncompressed {
            return Err(limit_hit(format!(
                "declared uncompressed size {} exceeds {} (ALIAS_MAX_UNCOMPRESSED)",
                env.declared, limits.max_total_uncompressed
            )));
        }
        if env.declared > limits.ratio_min_size
            && env.declared / env.compressed.max(1) > limits.max_ratio
        {
            return Err(limit_hit(format!(
                "the entries together expand {} / {} bytes, past the ratio limit {} (ALIAS_MAX_RATIO; many small compressed entries?)",
                env.declared, env.compressed, limits.max_ratio
            )));
        }
        Ok(zp)
    }

    /// One streaming pass over a zip part's central directory: calls `f`
    /// with each file entry (directories left out), its name checked.
    pub(super) fn each_entry(
        &self,
        env: &mut Env<'_>,
        zp: &ZipPart<'_>,
        mut f: impl FnMut(&mut Env<'_>, PassEntry) -> Result<(), ExtractError>,
    ) -> Result<(), ExtractError> {
        let d = zp.d;
        // Directory reads are not counted as progress (they are read
        // once per pass).
        let reader = RangeReader::open(
            &self.storage,
            &d.key,
            d.size,
            self.handle.clone(),
            Arc::new(AtomicU64::new(0)),
        )
        .map_err(ExtractError::Io)?;
        let mut cd = CentralDirectory::new(reader, zp.end).map_err(|e| read_error(&d.name, e))?;
        let mut index = 0u64;
        while let Some(entry) = cd.next_entry().map_err(|e| read_error(&d.name, e))? {
            env.check_cancel()?;
            index += 1;
            let (name, is_dir) =
                check_name(&entry.name).map_err(|reason| ExtractError::UnsafeEntry {
                    dump: d.name.clone(),
                    entry: error::shown(&entry.name),
                    reason,
                })?;
            if is_dir {
                continue;
            }
            f(
                env,
                PassEntry {
                    index: index - 1,
                    name,
                    cd: entry,
                },
            )?;
        }
        Ok(())
    }

    /// An export whose parts are all zips: media decisions first, then one
    /// pass in the order of each part's central directory. Nothing per
    /// entry is kept in memory but the digests of the names (duplicates),
    /// and what filtered scopes need to decide on media.
    pub(super) fn zip_export(
        &self,
        env: &mut Env<'_>,
        parts: &[&DumpSource],
        jobs: &mut [&mut Job<'_>],
    ) -> Result<(), ExtractError> {
        let mut opened = Vec::with_capacity(parts.len());
        let mut dups: HashSet<(usize, u64)> = HashSet::new();
        {
            // First occurrence of each name wins.
            let mut first: HashSet<u64> = HashSet::new();
            for (p, d) in parts.iter().enumerate() {
                opened.push(self.open_zip(env, d, p, &mut first, &mut dups)?);
            }
        }
        let filtered = jobs.iter().any(|j| !j.whole);
        if filtered {
            // Sidecar candidates and decisions.
            for zp in &opened {
                self.each_entry(env, zp, |_, e| {
                    for job in jobs.iter_mut() {
                        if let Some((pi, ri)) = job.classify(&e.name) {
                            job.note_candidate(pi, ri, &e.name);
                        }
                    }
                    Ok(())
                })?;
            }
            for (p, zp) in opened.iter().enumerate() {
                let (d, cd_offset) = (zp.d, zp.end.cd_offset);
                let mut data = self.reader(env, d)?;
                self.each_entry(env, zp, |env, e| {
                    if dups.contains(&(p, e.index)) || e.cd.encrypted() {
                        return Ok(());
                    }
                    for job in jobs.iter_mut() {
                        if job.whole {
                            continue;
                        }
                        let Some((pi, ri)) = job.classify(&e.name) else {
                            continue;
                        };
                        if !job.is_decision_source(pi, ri) {
                            continue;
                        }
                        let mut entry = ZipEntryData::new(&mut data, &e.cd, cd_offset, env);
                        self.filter_entry(
                            env, job, d, &e.name, e.cd.size, pi, ri, &mut entry, false,
                        )?;
                    }
                    Ok(())
                })?;
            }
        }
        // Output.
        for (p, zp) in opened.iter().enumerate() {
            let (d, cd_offset) = (zp.d, zp.end.cd_offset);
            let mut data = self.reader(env, d)?;
            self.each_entry(env, zp, |env, e| {
                for job in jobs.iter_mut() {
                    let Some((pi, ri)) = job.classify(&e.name) else {
                        continue;
                    };
                    if dups.contains(&(p, e.index)) {
                        job.skip(
                            &d.name,
                            &e.name,
                            pi,
                            "duplicate of an entry of the same name",
                        );
                        continue;
                    }
                    if e.cd.encrypted() {
                        job.skip(&d.name, &e.name, pi, "encrypted entry");
                        continue;
                    }
                    let mut entry = ZipEntryData::new(&mut data, &e.cd, cd_offset, env);
                    self.handle_entry(env, job, d, &e.name, e.cd.size, pi, ri, &mut entry, true)?;
                }
                env.tick(false);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// A zip part in an export that also has tar parts: read in directory
    /// order, media decided at the end.
    pub(super) fn zip_streamed(
        &self,
        env: &mut Env<'_>,
        d: &DumpSource,
        jobs: &mut [&mut Job<'_>],
    ) -> Result<(), ExtractError> {
        let mut dups = HashSet::new();
        let zp = {
            let mut first = HashSet::new();
            self.open_zip(env, d, 0, &mut first, &mut dups)?
        };
        let cd_offset = zp.end.cd_offset;
        let mut data = self.reader(env, d)?;
        self.each_entry(env, &zp, |env, e| {
            for job in jobs.iter_mut() {
                let Some((pi, ri)) = job.classify(&e.name) else {
                    continue;
                };
                job.note_candidate(pi, ri, &e.name);
                if e.cd.encrypted() {
                    job.skip(&d.name, &e.name, pi, "encrypted entry");
                    continue;
                }
                let mut entry = ZipEntryData::new(&mut data, &e.cd, cd_offset, env);
                self.handle_entry(env, job, d, &e.name, e.cd.size, pi, ri, &mut entry, false)?;
            }
            env.tick(false);
            Ok(())
        })?;
        Ok(())
    }
}
