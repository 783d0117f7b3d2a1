//! The content of generated files: fixed bytes, synthetic media, and record
//! streams produced on demand (so that multi-GiB files never sit in memory).

use std::io::{self, Read};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Makes one item (record, row, message) of a stream: `(rng, index, time in
/// epoch ms) → bytes`.
pub type ItemFn = Arc<dyn Fn(&mut StdRng, u64, i64) -> Vec<u8> + Send + Sync>;

/// Kinds of synthetic media: a real header, random bytes, a real trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    /// JPEG (SOI, JFIF APP0 … EOI).
    Jpeg,
    /// MP3 (ID3v2 tag, MPEG frame header).
    Mp3,
    /// MP4 (`ftyp` box).
    Mp4,
}

impl MediaKind {
    fn header(self) -> &'static [u8] {
        match self {
            MediaKind::Jpeg => &[
                0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00,
                0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
            ],
            MediaKind::Mp3 => &[
                b'I', b'D', b'3', 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFB, 0x90, 0x64,
            ],
            MediaKind::Mp4 => &[
                0x00, 0x00, 0x00, 0x18, b'f', b't', b'y', b'p', b'm', b'p', b'4', b'2', 0x00, 0x00,
                0x00, 0x00, b'm', b'p', b'4', b'2', b'i', b's', b'o', b'm',
            ],
        }
    }

    fn trailer(self) -> &'static [u8] {
        match self {
            MediaKind::Jpeg => &[0xFF, 0xD9],
            MediaKind::Mp3 | MediaKind::Mp4 => &[],
        }
    }
}

/// A stream of items between a prefix and a suffix, generated until a byte
/// budget is reached.
#[derive(Clone)]
pub struct StreamSpec {
    pub prefix: Vec<u8>,
    pub separator: Vec<u8>,
    pub suffix: Vec<u8>,
    /// Items written first, as they are.
    pub presets: Arc<Vec<Vec<u8>>>,
    /// Makes the other items.
    pub item: ItemFn,
    /// Stop once this many bytes are written (items are whole).
    pub budget: u64,
    /// At least this many generated items (besides presets).
    pub min_items: u64,
    /// Seed of this file.
    pub seed: u64,
    /// Time of the first item (epoch ms); items go back in time.
    pub t_end: i64,
    /// Average time between items (ms).
    pub t_step: i64,
    /// Items stay within this span before `t_end` (ms), wrapping around.
    pub t_span: i64,
    /// Another form of the same items (the JSON of an HTML file): when set,
    /// the budget counts that form's bytes, so both forms of a file hold
    /// the same items.
    pub twin: Option<Twin>,
}

/// The form whose bytes a [`StreamSpec`]'s budget counts.
#[derive(Clone)]
pub struct Twin {
    /// Makes the item in that form (same randomness as `item`).
    pub item: ItemFn,
    /// Its prefix and separator lengths.
    pub prefix: u64,
    pub separator: u64,
    /// Lengths of the presets in that form.
    pub presets: Vec<u64>,
}

/// What a planned file holds.
#[derive(Clone)]
pub enum Content {
    /// Fixed bytes.
    Bytes(Arc<Vec<u8>>),
    /// Synthetic media of an exact size.
    Media {
        kind: MediaKind,
        size: u64,
        seed: u64,
    },
    /// A record stream.
    Stream(StreamSpec),
}

impl Content {
    /// A fresh reader over the content (the same bytes every time).
    pub fn reader(&self) -> Box<dyn Read + Send> {
        match self {
            Content::Bytes(b) => Box::new(io::Cursor::new(ArcBytes(b.clone()))),
            Content::Media { kind, size, seed } => Box::new(MediaReader {
                kind: *kind,
                size: *size,
                pos: 0,
                rng: StdRng::seed_from_u64(*seed),
            }),
            Content::Stream(spec) => Box::new(StreamReader::new(spec.clone())),
        }
    }

    /// The exact size when it is known without generating.
    pub fn known_size(&self) -> Option<u64> {
        match self {
            Content::Bytes(b) => Some(b.len() as u64),
            Content::Media { size, .. } => Some(*size),
            Content::Stream(_) => None,
        }
    }

    /// About how large the content is (the budget for streams).
    pub fn approx_size(&self) -> u64 {
        match self {
            Content::Stream(s) => s.budget,
            other => other.known_size().unwrap_or(0),
        }
    }

    /// Whether the bytes are already compressed (media).
    pub fn is_media(&self) -> bool {
        matches!(self, Content::Media { .. })
    }
}

struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

struct MediaReader {
    kind: MediaKind,
    size: u64,
    pos: u64,
    rng: StdRng,
}

impl Read for MediaReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let header = self.kind.header();
        let trailer = self.kind.trailer();
        let header_len = (header.len() as u64).min(self.size);
        let trailer_start = self
            .size
            .saturating_sub(trailer.len() as u64)
            .max(header_len);
        let want = usize::try_from(self.size - self.pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let mut n = 0;
        while n < want {
            let pos = self.pos + n as u64;
            let Some(slot) = buf.get_mut(n..want) else {
                break;
            };
            if pos < header_len {
                let from = pos as usize;
                let take = ((header_len - pos) as usize).min(slot.len());
                if let (Some(dst), Some(src)) =
                    (slot.get_mut(..take), header.get(from..from + take))
                {
                    dst.copy_from_slice(src);
                }
                n += take;
            } else if pos < trailer_start {
                let take = usize::try_from(trailer_start - pos)
                    .unwrap_or(usize::MAX)
                    .min(slot.len());
                if let Some(dst) = slot.get_mut(..take) {
                    self.rng.fill_bytes(dst);
                }
                n += take;
            } else {
                let from = (pos - trailer_start) as usize;
                let take = (trailer.len() - from).min(slot.len());
                if let (Some(dst), Some(src)) =
                    (slot.get_mut(..take), trailer.get(from..from + take))
                {
                    dst.copy_from_slice(src);
                }
                n += take;
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[derive(PartialEq, Eq)]
enum Phase {
    Prefix,
    Items,
    Suffix,
    Done,
}

struct StreamReader {
    spec: StreamSpec,
    rng: StdRng,
    phase: Phase,
    index: u64,
    preset: usize,
    written: u64,
    /// Bytes of the twin form so far.
    twin_written: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl StreamReader {
    fn new(spec: StreamSpec) -> Self {
        StreamReader {
            rng: StdRng::seed_from_u64(spec.seed),
            spec,
            phase: Phase::Prefix,
            index: 0,
            preset: 0,
            written: 0,
            twin_written: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Refills `buf` with the next piece; false at the end.
    fn refill(&mut self) -> bool {
        self.buf.clear();
        self.pos = 0;
        loop {
            match self.phase {
                Phase::Prefix => {
                    self.twin_written = self.spec.twin.as_ref().map_or(0, |t| t.prefix);
                    self.buf.extend_from_slice(&self.spec.prefix);
                    self.phase = Phase::Items;
                    if !self.buf.is_empty() {
                        return true;
                    }
                }
                Phase::Items => {
                    let first = self.preset == 0 && self.index == 0;
                    let twin_sep = match (&self.spec.twin, first) {
                        (Some(t), false) => t.separator,
                        _ => 0,
                    };
                    let written = match self.spec.twin {
                        Some(_) => self.twin_written,
                        None => self.written,
                    };
                    let item = if let Some(p) = self.spec.presets.get(self.preset) {
                        if let Some(t) = &self.spec.twin {
                            self.twin_written +=
                                twin_sep + t.presets.get(self.preset).copied().unwrap_or(0);
                        }
                        self.preset += 1;
                        p.clone()
                    } else if self.index < self.spec.min_items || written < self.spec.budget {
                        let jitter = self.rng.gen_range(0..self.spec.t_step.max(1));
                        let back = (self.index as i64).saturating_mul(self.spec.t_step) + jitter;
                        let t = self.spec.t_end - back % self.spec.t_span.max(1);
                        if let Some(twin) = &self.spec.twin {
                            let mut same = self.rng.clone();
                            let other = (twin.item)(&mut same, self.index, t);
                            self.twin_written += twin_sep + other.len() as u64;
                        }
                        let item = (self.spec.item)(&mut self.rng, self.index, t);
                        self.index += 1;
                        item
                    } else {
                        self.phase = Phase::Suffix;
                        continue;
                    };
                    if !first {
                        self.buf.extend_from_slice(&self.spec.separator);
                    }
                    self.buf.extend_from_slice(&item);
                    return true;
                }
                Phase::Suffix => {
                    self.buf.extend_from_slice(&self.spec.suffix);
                    self.phase = Phase::Done;
                    if !self.buf.is_empty() {
                        return true;
                    }
                }
                Phase::Done => return false,
            }
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if !self.refill() {
                return Ok(0);
            }
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        self.written += n as u64;
        Ok(n)
    }
}

/// One file of an export.
#[derive(Clone)]
pub struct Planned {
    /// Path inside the export, `/`-separated.
    pub path: String,
    /// Its bytes.
    pub content: Content,
}

impl Planned {
    pub fn bytes(path: impl Into<String>, bytes: Vec<u8>) -> Planned {
        Planned {
            path: path.into(),
            content: Content::Bytes(Arc::new(bytes)),
        }
    }

    pub fn media(path: impl Into<String>, kind: MediaKind, size: u64, seed: u64) -> Planned {
        Planned {
            path: path.into(),
            content: Content::Media { kind, size, seed },
        }
    }

    pub fn stream(path: impl Into<String>, spec: StreamSpec) -> Planned {
        Planned {
            path: path.into(),
            content: Content::Stream(spec),
        }
    }

    /// The record stream of a streamed file.
    pub fn spec_mut(&mut self) -> Option<&mut StreamSpec> {
        match &mut self.content {
            Content::Stream(spec) => Some(spec),
            _ => None,
        }
    }
}

/// Counts the bytes of a reader.
pub fn measure(mut r: impl Read) -> io::Result<u64> {
    io::copy(&mut r, &mut io::sink())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_has_exact_size_and_header() {
        for size in [0u64, 1, 5, 21, 22, 100_000] {
            let c = Content::Media {
                kind: MediaKind::Jpeg,
                size,
                seed: 3,
            };
            let mut v = Vec::new();
            c.reader().read_to_end(&mut v).unwrap();
            assert_eq!(v.len() as u64, size);
            if size > 30 {
                assert_eq!(&v[..3], &[0xFF, 0xD8, 0xFF]);
                assert_eq!(&v[v.len() - 2..], &[0xFF, 0xD9]);
            }
        }
    }

    #[test]
    fn stream_is_reproducible() {
        let spec = StreamSpec {
            prefix: b"[".to_vec(),
            separator: b",".to_vec(),
            suffix: b"]".to_vec(),
            presets: Arc::new(vec![b"0".to_vec()]),
            item: Arc::new(|rng: &mut StdRng, i, t| {
                format!("{}{}", i, rng.gen_range(0..9) + t % 2).into_bytes()
            }),
            budget: 100,
            min_items: 3,
            seed: 1,
            t_end: 1000,
            t_step: 10,
            t_span: 1000,
            twin: None,
        };
        let c = Content::Stream(spec);
        let mut a = Vec::new();
        let mut b = Vec::new();
        c.reader().read_to_end(&mut a).unwrap();
        c.reader().read_to_end(&mut b).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 100 && a.starts_with(b"[0,") && a.ends_with(b"]"));
    }
}
