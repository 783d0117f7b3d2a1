//! An incremental Server-Sent Events parser: each byte is looked at once
//! (no rescan of a growing buffer), and one event is bounded in memory.
//!
//! Lines end with `\n`, `\r\n` or `\r`; `data:` fields (one optional space
//! after the colon) are joined with `\n`; a blank line dispatches the event
//! when it has data; comments (`:`) and other fields are ignored.

use anyhow::{bail, Result};

/// The default bound on one event (its line and data together): 1 MiB.
pub const DEFAULT_MAX_EVENT: usize = 1 << 20;

/// Parses an event stream fed in pieces of any size.
#[derive(Debug)]
pub struct SseParser {
    max_event: usize,
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The last piece ended with `\r`: a `\n` starting the next one belongs
    /// to that line end.
    after_cr: bool,
    scanned: u64,
}

impl SseParser {
    /// A parser refusing events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            max_event,
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            scanned: 0,
        }
    }

    /// Bytes examined so far (each fed byte once).
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Feeds a piece; calls `on_data` with the data of each complete event.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_data: impl FnMut(String)) -> Result<()> {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                self.scanned += 1;
                bytes = rest;
            }
        }
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.scanned += bytes.len() as u64;
                    self.grow(bytes)?;
                    return Ok(());
                }
                Some(i) => {
                    self.scanned += i as u64 + 1;
                    self.grow(&bytes[..i])?;
                    let cr = bytes[i] == b'\r';
                    bytes = &bytes[i + 1..];
                    if cr {
                        match bytes.first() {
                            Some(b'\n') => {
                                self.scanned += 1;
                                bytes = &bytes[1..];
                            }
                            None => self.after_cr = true,
                            Some(_) => {}
                        }
                    }
                    self.end_line(&mut on_data)?;
                }
            }
        }
        Ok(())
    }

    fn grow(&mut self, part: &[u8]) -> Result<()> {
        if self.line.len() + self.data.len() + part.len() > self.max_event {
            bail!(
                "an event of the stream is larger than {} bytes (--max-event)",
                self.max_event
            );
        }
        self.line.extend_from_slice(part);
        Ok(())
    }

    fn end_line(&mut self, on_data: &mut impl FnMut(String)) -> Result<()> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                data.pop(); // the last `\n`
                on_data(String::from_utf8_lossy(&data).into_owned());
            }
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        if let Some(value) = line.strip_prefix(b"data") {
            let value = match value.first() {
                None => &[][..],
                Some(b':') => value[1..].strip_prefix(b" ").unwrap_or(&value[1..]),
                // `dataX:` is another field.
                Some(_) => return Ok(()),
            };
            self.data.extend_from_slice(value);
            self.data.push(b'\n');
            self.has_data = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(pieces: &[&[u8]]) -> Result<Vec<String>> {
        let mut p = SseParser::new(64);
        let mut out = Vec::new();
        for piece in pieces {
            p.feed(piece, |d| out.push(d))?;
        }
        Ok(out)
    }

    #[test]
    fn events_across_pieces_and_line_ends() {
        assert_eq!(
            events(&[
                b"event: status\ndata: {\"a\"",
                b":1}\n\n: keep-alive\n\ndata: x\r",
                b"\n\r\n"
            ])
            .unwrap(),
            vec!["{\"a\":1}".to_owned(), "x".to_owned()]
        );
        assert_eq!(
            events(&[b"data:a\ndata: b\r\rdata\n\n"]).unwrap(),
            vec!["a\nb".to_owned(), String::new()]
        );
        assert_eq!(events(&[b"datax: no\n\n"]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut p = SseParser::new(1000);
        let mut n = 0;
        let err = (0..100).try_for_each(|_| p.feed(b"data: 0123456789", |_| n += 1));
        assert!(err.is_err());
        assert_eq!(n, 0);
        // Data lines count too, not only the current line.
        let mut p = SseParser::new(1000);
        let err = (0..200).try_for_each(|_| p.feed(b"data: 0123456789\n", |_| {}));
        assert!(err.is_err());
    }

    #[test]
    fn each_byte_is_scanned_once() {
        // A 4 MiB event fed 100 bytes at a time: a parser that rescans its
        // buffer on every piece would look at ~80 GB.
        let mut p = SseParser::new(8 << 20);
        let piece = [b'x'; 100];
        let mut got = Vec::new();
        p.feed(b"data: ", |_| {}).unwrap();
        for _ in 0..(4 << 20) / 100 {
            p.feed(&piece, |d| got.push(d.len())).unwrap();
        }
        p.feed(b"\n\n", |d| got.push(d.len())).unwrap();
        assert_eq!(got, vec![(4 << 20) / 100 * 100]);
        assert_eq!(p.scanned(), 6 + (4 << 20) / 100 * 100 + 2);
    }
}
