//! Tar and tar.gz parts, read in one streaming pass.

use std::collections::HashSet;
use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use crate::extract::ExtractError;

use crate::extract::archive::{name_digest, TempFile};
use crate::extract::source::{check_name, Tally};

use super::{read_error, Env, Job, Kind, ReadMarkedWrite, Spool, Work, WriteFailed};
use crate::extract::{error, source};
use crate::extract::{DumpSource, Limits};

impl Work {
    /// A tar or tar.gz part, in one pass.
    pub(super) fn tar_part(
        &self,
        env: &mut Env<'_>,
        d: &DumpSource,
        kind: Kind,
        jobs: &mut [&mut Job<'_>],
    ) -> Result<(), ExtractError> {
        let limits = env.limits().clone();
        let compressed = Arc::new(AtomicU64::new(0));
        let tally = Tally {
            inner: BufReader::with_capacity(1 << 20, self.reader(env, d)?),
            count: compressed.clone(),
        };
        let stream: Box<dyn Read> = match kind {
            Kind::TarGz => Box::new(MultiGzDecoder::new(tally)),
            _ => Box::new(tally),
        };
        let guarded = RatioGuard {
            inner: stream,
            compressed,
            inflated: 0,
            total: env.inflated.clone(),
            limits: limits.clone(),
        };
        let mut ar = tar::Archive::new(guarded);
        let corrupt = |e: io::Error| read_error(&d.name, e);
        let entries = ar.entries().map_err(corrupt)?.raw(true);
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax_path: Option<Vec<u8>> = None;
        let mut pax_size: Option<u64> = None;
        let mut names_seen: HashSet<u64> = HashSet::new();
        for entry in entries {
            env.check_cancel()?;
            let mut entry = entry.map_err(corrupt)?;
            env.entries_seen += 1;
            if env.entries_seen > limits.max_entries {
                return Err(ExtractError::LimitExceeded {
                    dump: d.name.clone(),
                    reason: format!(
                        "more than {} entries in the export (ALIAS_MAX_ENTRIES)",
                        limits.max_entries
                    ),
                });
            }
            let header = entry.header().clone();
            let kind_byte = header.entry_type();
            let unsafe_entry = |name: &str, reason: &'static str| ExtractError::UnsafeEntry {
                dump: d.name.clone(),
                entry: error::shown(name),
                reason,
            };
            if kind_byte.is_gnu_longname() || kind_byte.is_pax_local_extensions() {
                let mut buf = Vec::new();
                (&mut entry)
                    .take(1 << 20)
                    .read_to_end(&mut buf)
                    .map_err(corrupt)?;
                if entry.header().entry_size().unwrap_or(0) > 1 << 20 {
                    return Err(unsafe_entry("", "tar extension header larger than 1 MiB"));
                }
                if kind_byte.is_gnu_longname() {
                    while buf.last() == Some(&0) {
                        buf.pop();
                    }
                    long_name = Some(buf);
                } else {
                    for (k, v) in pax_records(&buf) {
                        match k.as_slice() {
                            b"path" => pax_path = Some(v),
                            b"size" => {
                                pax_size = std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok())
                            }
                            _ => {}
                        }
                    }
                }
                continue;
            }
            if kind_byte.is_gnu_longlink() || kind_byte.is_pax_global_extensions() {
                io::copy(&mut (&mut entry).take(1 << 20), &mut io::sink()).map_err(corrupt)?;
                continue;
            }
            let raw_name = pax_path
                .take()
                .or_else(|| long_name.take())
                .unwrap_or_else(|| header.path_bytes().into_owned());
            let declared_pax = pax_size.take();
            let raw_name = String::from_utf8(raw_name)
                .map_err(|_| unsafe_entry("<not UTF-8>", "entry name is not UTF-8"))?;
            if kind_byte.is_symlink() {
                return Err(unsafe_entry(&raw_name, "symbolic link"));
            }
            if kind_byte.is_hard_link() {
                return Err(unsafe_entry(&raw_name, "hard link"));
            }
            let (name, is_dir) = check_name(&raw_name).map_err(|r| unsafe_entry(&raw_name, r))?;
            if kind_byte.is_dir() || is_dir {
                continue;
            }
            if !(kind_byte.is_file() || kind_byte.is_contiguous()) {
                return Err(unsafe_entry(
                    &raw_name,
                    "special file (device, fifo or sparse)",
                ));
            }
            let size = header.entry_size().map_err(corrupt)?;
            if declared_pax.is_some_and(|s| s != size) {
                return Err(ExtractError::UnsupportedDump {
                    dump: d.name.clone(),
                    reason: format!("entry {:?} has a pax size override", error::shown(&name)),
                });
            }
            let duplicate = !names_seen.insert(name_digest(&name));
            let mut consumers: Vec<(usize, usize, usize)> = Vec::new();
            for (j, job) in jobs.iter_mut().enumerate() {
                if let Some((pi, ri)) = job.classify(&name) {
                    if duplicate {
                        job.skip(&d.name, &name, pi, "duplicate of an entry of the same name");
                        continue;
                    }
                    job.note_candidate(pi, ri, &name);
                    consumers.push((j, pi, ri));
                }
            }
            if consumers.len() == 1 {
                let mut reader: &mut dyn Read = &mut entry;
                let mut data = Spool::Stream(Some(&mut reader));
                for (j, pi, ri) in consumers {
                    if let Some(job) = jobs.get_mut(j) {
                        self.handle_entry(env, job, d, &name, size, pi, ri, &mut data, false)?;
                    }
                }
            } else if !consumers.is_empty() {
                let mut data = if size <= 16 << 20 {
                    let mut v = Vec::with_capacity(size as usize);
                    entry.read_to_end(&mut v).map_err(corrupt)?;
                    Spool::Memory(Arc::new(v))
                } else {
                    let (t, mut f) = TempFile::create(&env.temp_dir, "spool")?;
                    io::copy(&mut entry, &mut ReadMarkedWrite(&mut f)).map_err(|e| {
                        if e.get_ref().is_some_and(|x| x.is::<WriteFailed>()) {
                            read_error(&d.name, e)
                        } else {
                            corrupt(e)
                        }
                    })?;
                    f.flush()?;
                    Spool::File(t)
                };
                for (j, pi, ri) in consumers {
                    if let Some(job) = jobs.get_mut(j) {
                        self.handle_entry(env, job, d, &name, size, pi, ri, &mut data, false)?;
                    }
                }
            }
            env.tick(false);
        }
        Ok(())
    }
}

/// `len key=value\n` records of a pax extended header.
pub(super) fn pax_records(buf: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|b| *b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(rest.get(..sp).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        let Some(record) = rest.get(sp + 1..len) else {
            break;
        };
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=') {
            out.push((
                record.get(..eq).unwrap_or_default().to_vec(),
                record.get(eq + 1..).unwrap_or_default().to_vec(),
            ));
        }
        rest = rest.get(len..).unwrap_or_default();
    }
    out
}

/// Fails a decompressed stream whose overall ratio passes the limit, or
/// when the bytes inflated in the whole build pass the total limit.
pub(super) struct RatioGuard<R> {
    pub(super) inner: R,
    pub(super) compressed: Arc<AtomicU64>,
    pub(super) inflated: u64,
    /// Bytes inflated in the whole build (all parts).
    pub(super) total: Arc<AtomicU64>,
    pub(super) limits: Limits,
}

impl<R: Read> Read for RatioGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inflated += n as u64;
        let c = self.compressed.load(Ordering::Relaxed).max(1);
        if self.inflated > self.limits.ratio_min_size && self.inflated / c > self.limits.max_ratio {
            return Err(io::Error::other(source::LimitHit(format!(
                "the compressed stream expands past the ratio limit {} ({} bytes from {}; ALIAS_MAX_RATIO; a gzip bomb?)",
                self.limits.max_ratio, self.inflated, c
            ))));
        }
        let total = self.total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.limits.max_total_uncompressed {
            return Err(io::Error::other(source::LimitHit(format!(
                "more than {} bytes uncompressed in the dumps (ALIAS_MAX_UNCOMPRESSED)",
                self.limits.max_total_uncompressed
            ))));
        }
        Ok(n)
    }
}
