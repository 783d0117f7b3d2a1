//! The output of a dry run: where a scope archive's bytes go when nothing
//! is written. A [`ScopeArchive`](super::archive::ScopeArchive) writes
//! either a zip ([`ZipOut`]) or, for a preview, into a [`DryOut`], which
//! takes the same calls, counts the bytes of each entry, keeps the first
//! few records as samples and discards the rest. Everything before it (the
//! passes over the dumps, the filtering, the media decisions, the entry
//! log) is the build's own code, so a preview counts what a build writes.

use std::collections::BTreeSet;
use std::io::{self, Read};

use super::zipfmt::{CdEntry, Written, ZipOut};

/// Sample records kept per scope.
pub(crate) const MAX_SAMPLES: usize = 3;

/// Characters kept of one sample record (longer ones are cut, with `…`).
pub(crate) const SAMPLE_CHARS: usize = 400;

/// File names listed per scope.
pub(crate) const MAX_FIRST_FILES: usize = 5;

/// Characters kept of one listed file name.
pub(crate) const NAME_CHARS: usize = 200;

/// `text` cut to `max` characters, with `…` when it was longer.
pub(crate) fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => {
            let mut s = text.get(..at).unwrap_or_default().to_owned();
            s.push('…');
            s
        }
        None => text.to_owned(),
    }
}

/// A discarding archive output: sizes of entries and sample records.
#[derive(Debug, Default)]
pub(crate) struct DryOut {
    /// Bytes of the open entry (`None` when no entry is open).
    current: Option<u64>,
    /// Samples of the open entry, kept only if the entry ends well.
    open_samples: Vec<String>,
    /// Samples of ended entries.
    samples: Vec<String>,
}

impl DryOut {
    fn no_entry() -> io::Error {
        io::Error::other("no entry is open")
    }

    fn start(&mut self) -> io::Result<()> {
        if self.current.is_some() {
            return Err(io::Error::other("an entry is already open"));
        }
        self.current = Some(0);
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let n = self.current.as_mut().ok_or_else(Self::no_entry)?;
        *n += bytes.len() as u64;
        Ok(())
    }

    fn end(&mut self) -> io::Result<Written> {
        let size = self.current.take().ok_or_else(Self::no_entry)?;
        self.samples.append(&mut self.open_samples);
        Ok(written(size))
    }

    fn abort(&mut self) {
        self.current = None;
        self.open_samples.clear();
    }

    /// Notes a record written to the open entry.
    pub(crate) fn record(&mut self, body: &[u8]) {
        if self.samples.len() + self.open_samples.len() >= MAX_SAMPLES {
            return;
        }
        // At most what the cut keeps, in bytes, is decoded.
        let head = body.get(..SAMPLE_CHARS * 4 + 4).unwrap_or(body);
        let text = String::from_utf8_lossy(head);
        let mut sample = cut(text.trim(), SAMPLE_CHARS);
        if head.len() < body.len() && !sample.ends_with('…') {
            sample.push('…');
        }
        self.open_samples.push(sample);
    }

    /// The samples kept.
    pub(crate) fn into_samples(self) -> Vec<String> {
        self.samples
    }
}

fn written(size: u64) -> Written {
    Written {
        header_at: 0,
        method: 0,
        crc: 0,
        csize: size,
        size,
    }
}

/// Where a scope archive writes: a zip, or nowhere (a preview).
pub(crate) enum Out {
    /// A real archive.
    Zip(Box<ZipOut>),
    /// A dry run.
    Dry(DryOut),
}

impl Out {
    /// Starts an entry.
    pub(crate) fn start(&mut self, name: &str, stored: bool, large: bool) -> io::Result<()> {
        match self {
            Out::Zip(z) => z.start(name, stored, large),
            Out::Dry(d) => d.start(),
        }
    }

    /// Writes bytes of the open entry.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Out::Zip(z) => z.write(bytes),
            Out::Dry(d) => d.write(bytes),
        }
    }

    /// Ends the open entry.
    pub(crate) fn end(&mut self) -> io::Result<Written> {
        match self {
            Out::Zip(z) => z.end(),
            Out::Dry(d) => d.end(),
        }
    }

    /// Drops the open entry.
    pub(crate) fn abort(&mut self) -> io::Result<()> {
        match self {
            Out::Zip(z) => z.abort(),
            Out::Dry(d) => {
                d.abort();
                Ok(())
            }
        }
    }

    /// Copies a zip entry raw from `data` (positioned at its compressed
    /// bytes); a dry run counts its uncompressed size without reading it.
    pub(crate) fn raw_copy(
        &mut self,
        name: &str,
        source: &CdEntry,
        data: &mut dyn Read,
    ) -> io::Result<Written> {
        match self {
            Out::Zip(z) => z.raw_copy(
                name,
                source.method,
                source.crc,
                source.csize,
                source.size,
                data,
            ),
            Out::Dry(d) => {
                if d.current.is_some() {
                    return Err(io::Error::other("an entry is already open"));
                }
                Ok(written(source.size))
            }
        }
    }

    /// Notes a record written to the open entry (samples of a dry run).
    pub(crate) fn record(&mut self, body: &[u8]) {
        if let Out::Dry(d) = self {
            d.record(body);
        }
    }
}

/// The first names of an archive in its order: the smallest ones when it
/// is sorted, else the first written.
#[derive(Debug)]
pub(crate) struct FirstNames {
    sorted: bool,
    names: BTreeSet<String>,
    in_order: Vec<String>,
}

impl FirstNames {
    /// For an archive sorted by name or not.
    pub(crate) fn new(sorted: bool) -> FirstNames {
        FirstNames {
            sorted,
            names: BTreeSet::new(),
            in_order: Vec::new(),
        }
    }

    /// Offers the next kept name.
    pub(crate) fn offer(&mut self, name: &str) {
        if !self.sorted {
            if self.in_order.len() < MAX_FIRST_FILES {
                self.in_order.push(name.to_owned());
            }
            return;
        }
        if self.names.len() < MAX_FIRST_FILES {
            self.names.insert(name.to_owned());
        } else if self.names.last().is_some_and(|last| name < last.as_str()) {
            self.names.pop_last();
            self.names.insert(name.to_owned());
        }
    }

    /// The names, each cut to [`NAME_CHARS`].
    pub(crate) fn into_names(self) -> Vec<String> {
        let names = if self.sorted {
            self.names.into_iter().collect()
        } else {
            self.in_order
        };
        names.iter().map(|n| cut(n, NAME_CHARS)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_kept_from_ended_entries_only_and_cut() {
        let mut d = DryOut::default();
        d.start().unwrap();
        d.record(b"{\"a\":1}");
        d.write(b"12345").unwrap();
        d.abort();
        d.start().unwrap();
        let long = "é".repeat(SAMPLE_CHARS * 3);
        d.record(long.as_bytes());
        d.record(b"  {\"b\":2}\n");
        d.record(b"\xff\xfe{}");
        d.record(b"{\"dropped\":true}");
        d.write(b"abc").unwrap();
        assert_eq!(d.end().unwrap().size, 3);
        let s = d.into_samples();
        assert_eq!(s.len(), MAX_SAMPLES);
        assert_eq!(s[0].chars().count(), SAMPLE_CHARS + 1);
        assert!(s[0].ends_with('…'));
        assert_eq!(s[1], "{\"b\":2}");
        assert_eq!(s[2], "\u{fffd}\u{fffd}{}");
    }

    #[test]
    fn entries_must_be_opened_once() {
        let mut d = DryOut::default();
        assert!(d.write(b"x").is_err());
        assert!(d.end().is_err());
        d.start().unwrap();
        assert!(d.start().is_err());
    }

    #[test]
    fn first_names_follow_the_archive_order() {
        let mut f = FirstNames::new(true);
        for n in ["g", "f", "e", "d", "c", "b", "a", "h"] {
            f.offer(n);
        }
        assert_eq!(f.into_names(), ["a", "b", "c", "d", "e"]);
        let mut f = FirstNames::new(false);
        for n in ["g", "f", "e", "d", "c", "b", "a"] {
            f.offer(n);
        }
        assert_eq!(f.into_names(), ["g", "f", "e", "d", "c"]);
        let mut f = FirstNames::new(true);
        f.offer(&"x".repeat(NAME_CHARS + 10));
        assert_eq!(f.into_names()[0].chars().count(), NAME_CHARS + 1);
    }

    #[test]
    fn cut_keeps_short_text() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc…");
    }
}
