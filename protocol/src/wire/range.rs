//! The chunk headers: the protocol's `Range: start-end` (inclusive, no unit,
//! `bytes=` tolerated) and the optional `Content-Range: bytes start-end/total`.

/// Inclusive byte range of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    /// First byte offset.
    pub start: u64,
    /// Last byte offset (inclusive).
    pub end: u64,
}

impl ChunkRange {
    /// The chunk of `len` bytes at `start` of a file of `total` bytes;
    /// `None` when it is empty or goes past the end.
    pub fn of(start: u64, len: u64, total: u64) -> Option<ChunkRange> {
        let end = start.checked_add(len.checked_sub(1)?)?;
        (end < total).then_some(ChunkRange { start, end })
    }

    /// The `Range` header value the bank sends: `start-end`.
    pub fn range_header(&self) -> String {
        format!("{}-{}", self.start, self.end)
    }

    /// The `Content-Range` header value the bank sends:
    /// `bytes start-end/total`.
    pub fn content_range_header(&self, total: u64) -> String {
        format!("bytes {}-{}/{total}", self.start, self.end)
    }

    /// Number of bytes the range covers (a parsed range always has one:
    /// [`parse_range`] refuses ranges whose length does not fit a `u64`).
    #[allow(clippy::len_without_is_empty)] // a range is never empty
    pub fn len(&self) -> u64 {
        self.end
            .checked_sub(self.start)
            .and_then(|n| n.checked_add(1))
            .unwrap_or(u64::MAX)
    }
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `start-end` or `bytes=start-end` strictly: decimal offsets,
/// `end >= start`, a length (`end - start + 1`) that fits a `u64`, nothing
/// else.
pub fn parse_range(value: &str) -> Option<ChunkRange> {
    let value = value.trim();
    let value = value.strip_prefix("bytes=").unwrap_or(value);
    let (a, b) = value.split_once('-')?;
    let (start, end) = (digits(a)?, digits(b)?);
    end.checked_sub(start)?.checked_add(1)?;
    Some(ChunkRange { start, end })
}

/// The reference's reading: the first `\d+-\d+` anywhere in the header (the
/// regex is unanchored); `None` when there is none.
pub fn parse_range_loose(value: &str) -> Option<(u64, u64)> {
    let bytes = value.as_bytes();
    let run = |from: usize| {
        let mut i = from;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let a_end = run(i);
        if bytes.get(a_end) == Some(&b'-') && bytes.get(a_end + 1).is_some_and(u8::is_ascii_digit) {
            let b_end = run(a_end + 1);
            // Offsets too long for u64 count as "no match", like NaN would.
            let start = value.get(i..a_end)?.parse().ok()?;
            let end = value.get(a_end + 1..b_end)?.parse().ok()?;
            return Some((start, end));
        }
        i = a_end;
    }
    None
}

/// A parsed `Content-Range: bytes start-end/total` (`total` may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// The bytes of the chunk.
    pub range: ChunkRange,
    /// The size of the whole file, `None` for `*`.
    pub total: Option<u64>,
}

/// Parses a `Content-Range` header of the `bytes` unit.
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let range = parse_range(range)?;
    let total = match total {
        "*" => None,
        t => Some(digits(t)?),
    };
    if total.is_some_and(|t| range.end >= t) {
        return None;
    }
    Some(ContentRange { range, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_ranges() {
        assert_eq!(parse_range("0-4"), Some(ChunkRange { start: 0, end: 4 }));
        assert_eq!(parse_range("bytes=10-19").map(|r| r.len()), Some(10));
        for bad in [
            "",
            "4-0",
            "0-",
            "-4",
            "a-b",
            "0-4,6-7",
            "bytes 0-4",
            "+1-2",
            "0 -4",
        ] {
            assert_eq!(parse_range(bad), None, "{bad:?}");
        }
        // Lengths that do not fit a u64 are refused, not wrapped.
        assert_eq!(parse_range("0-18446744073709551615"), None);
        assert_eq!(
            parse_range("1-18446744073709551615").map(|r| r.len()),
            Some(u64::MAX)
        );
    }

    #[test]
    fn loose_ranges_like_the_reference() {
        assert_eq!(parse_range_loose("0-4"), Some((0, 4)));
        assert_eq!(parse_range_loose("bytes=5-9"), Some((5, 9)));
        assert_eq!(parse_range_loose("x 12-3 y"), Some((12, 3)));
        assert_eq!(parse_range_loose("1 2-3"), Some((2, 3)));
        assert_eq!(parse_range_loose("garbage"), None);
        assert_eq!(parse_range_loose("7-"), None);
    }

    #[test]
    fn headers_the_bank_sends_parse_back() {
        let r = ChunkRange::of(10, 5, 20).unwrap();
        assert_eq!(r.range_header(), "10-14");
        assert_eq!(r.content_range_header(20), "bytes 10-14/20");
        assert_eq!(parse_range(&r.range_header()), Some(r));
        assert_eq!(
            parse_content_range(&r.content_range_header(20)),
            Some(ContentRange {
                range: r,
                total: Some(20)
            })
        );
        assert_eq!(ChunkRange::of(10, 0, 20), None);
        assert_eq!(ChunkRange::of(10, 11, 20), None);
        assert_eq!(ChunkRange::of(u64::MAX, 2, u64::MAX), None);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-4/10"),
            Some(ContentRange {
                range: ChunkRange { start: 0, end: 4 },
                total: Some(10)
            })
        );
        assert_eq!(
            parse_content_range("bytes 0-4/*").map(|c| c.total),
            Some(None)
        );
        assert_eq!(parse_content_range("bytes 0-9/5"), None);
        assert_eq!(parse_content_range("0-4/10"), None);
    }
}
