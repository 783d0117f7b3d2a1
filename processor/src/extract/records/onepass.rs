//! One pass over a JSON record: checks its grammar (structure, strings,
//! escapes, numbers, literals, UTF-8) and notes where the values of the
//! fields a scope needs start and end, without building anything.
//!
//! Only those values are parsed afterwards (a handful of small slices), so
//! every byte of a record is read once. Strings are scanned eight bytes at
//! a time (SWAR: a quote, a backslash, a control character or a non-ASCII
//! byte stops the scan); a record with non-ASCII bytes in its strings is
//! checked as UTF-8 once, with the standard library's vectorised check.

/// Deepest nesting of a record, the record itself being depth 1: what
/// `serde_json` accepted before (its recursion limit).
pub(super) const MAX_DEPTH: usize = 128;

/// Why a pass stopped before the end of the record.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// The bytes end before the record does (more may follow).
    Incomplete,
    /// Not JSON, or deeper than [`MAX_DEPTH`].
    Bad(&'static str),
}

/// A needed field of a record: its index in the needed names and the span
/// of its value.
pub(super) type Span = (usize, usize, usize);

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` that ends a plain run inside a string:
/// `"`, `\`, a byte below 0x20 or a byte of 0x80 and above. Exact for the
/// lowest flagged byte (borrows only start at a flagged byte).
#[inline]
fn stops(w: u64) -> u64 {
    let q = w ^ (LO * u64::from(b'"'));
    let s = w ^ (LO * u64::from(b'\\'));
    let quote = q.wrapping_sub(LO) & !q;
    let slash = s.wrapping_sub(LO) & !s;
    let control = w.wrapping_sub(LO * 0x20) & !w;
    (quote | slash | control | w) & HI
}

struct Pass<'b> {
    b: &'b [u8],
    i: usize,
    non_ascii: bool,
}

impl Pass<'_> {
    /// The next byte after whitespace, not consumed.
    #[inline]
    fn peek(&mut self) -> Result<u8, Stop> {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
                return Ok(c);
            }
            self.i += 1;
        }
        Err(Stop::Incomplete)
    }

    #[inline]
    fn expect(&mut self, want: u8, msg: &'static str) -> Result<(), Stop> {
        if self.peek()? != want {
            return Err(Stop::Bad(msg));
        }
        self.i += 1;
        Ok(())
    }

    /// A string at its opening quote; returns whether it has escapes.
    fn string(&mut self) -> Result<bool, Stop> {
        self.i += 1;
        let mut escaped = false;
        loop {
            // Plain bytes, eight at a time.
            while let Some(word) = self.b.get(self.i..self.i + 8) {
                let mut w = [0u8; 8];
                w.copy_from_slice(word);
                let m = stops(u64::from_le_bytes(w));
                if m == 0 {
                    self.i += 8;
                } else {
                    self.i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
            }
            let Some(&c) = self.b.get(self.i) else {
                return Err(Stop::Incomplete);
            };
            self.i += 1;
            match c {
                b'"' => return Ok(escaped),
                b'\\' => {
                    escaped = true;
                    let e = *self.b.get(self.i).ok_or(Stop::Incomplete)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                let h = *self.b.get(self.i).ok_or(Stop::Incomplete)?;
                                if !h.is_ascii_hexdigit() {
                                    return Err(Stop::Bad("bad \\u escape in a string"));
                                }
                                self.i += 1;
                            }
                        }
                        _ => return Err(Stop::Bad("bad escape in a string")),
                    }
                }
                0..=0x1F => return Err(Stop::Bad("control character in a string")),
                0x80.. => self.non_ascii = true,
                _ => {}
            }
        }
    }

    fn digits(&mut self) -> Result<usize, Stop> {
        let start = self.i;
        while let Some(c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                return Ok(self.i - start);
            }
            self.i += 1;
        }
        // A record never ends with a number: more bytes are needed.
        Err(Stop::Incomplete)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), Stop> {
        const BAD: Stop = Stop::Bad("bad number");
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            None => return Err(Stop::Incomplete),
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits()?;
            }
            Some(_) => return Err(BAD),
        }
        let next = self.b.get(self.i).copied().ok_or(Stop::Incomplete)?;
        if next == b'.' {
            self.i += 1;
            if self.digits()? == 0 {
                return Err(BAD);
            }
        }
        let next = self.b.get(self.i).copied().ok_or(Stop::Incomplete)?;
        if matches!(next, b'e' | b'E') {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits()? == 0 {
                return Err(BAD);
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Stop> {
        let have = self.b.get(self.i..).unwrap_or_default();
        let n = have.len().min(word.len());
        if have.get(..n) != word.get(..n) {
            return Err(Stop::Bad("unexpected character in JSON"));
        }
        if n < word.len() {
            return Err(Stop::Incomplete);
        }
        self.i += n;
        Ok(())
    }

    /// A key and its colon, at the key's opening quote.
    fn member_key(&mut self) -> Result<(), Stop> {
        if self.peek()? != b'"' {
            return Err(Stop::Bad("expected an object key"));
        }
        self.string()?;
        self.expect(b':', "expected ':'")
    }

    /// One value at `depth` (its container's depth), nested values included.
    fn value(&mut self, depth: usize) -> Result<(), Stop> {
        // Open containers below the value, one bit each: 1 for an object.
        let mut objects = [0u64; MAX_DEPTH.div_ceil(64)];
        let mut open = 0usize;
        let is_object = |objects: &[u64], level: usize| {
            objects
                .get(level / 64)
                .is_some_and(|w| w >> (level % 64) & 1 == 1)
        };
        'value: loop {
            match self.peek()? {
                c @ (b'{' | b'[') => {
                    self.i += 1;
                    if depth + open + 1 > MAX_DEPTH {
                        return Err(Stop::Bad("JSON nested too deeply"));
                    }
                    let object = c == b'{';
                    if let Some(w) = objects.get_mut(open / 64) {
                        let bit = 1u64 << (open % 64);
                        *w = if object { *w | bit } else { *w & !bit };
                    }
                    open += 1;
                    let close = if object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.i += 1;
                        open -= 1;
                    } else {
                        if object {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => return Err(Stop::Bad("unexpected character in JSON")),
            }
            // After a value: close containers until one takes another item.
            while open > 0 {
                let object = is_object(&objects, open - 1);
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        if object {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                    b'}' if object => {
                        self.i += 1;
                        open -= 1;
                    }
                    b']' if !object => {
                        self.i += 1;
                        open -= 1;
                    }
                    _ => return Err(Stop::Bad("expected ',' or a closing bracket")),
                }
            }
            return Ok(());
        }
    }
}

/// Reads the record object at the start of `b` (no leading whitespace),
/// noting in `spans` the values of the members named in `needed` (compared
/// after unescaping); returns the offset just after the record.
pub(super) fn record(b: &[u8], needed: &[String], spans: &mut Vec<Span>) -> Result<usize, Stop> {
    spans.clear();
    let mut p = Pass {
        b,
        i: 0,
        non_ascii: false,
    };
    if b.first() != Some(&b'{') {
        return Err(Stop::Bad("a record is not an object"));
    }
    p.i = 1;
    if p.peek()? == b'}' {
        p.i += 1;
    } else {
        loop {
            if p.peek()? != b'"' {
                return Err(Stop::Bad("expected an object key"));
            }
            let key_start = p.i;
            let escaped = p.string()?;
            let raw = b.get(key_start..p.i).unwrap_or_default();
            let field = if escaped {
                match serde_json::from_slice::<String>(raw) {
                    Ok(k) => needed.iter().position(|n| *n == k),
                    Err(_) => return Err(Stop::Bad("bad object key")),
                }
            } else {
                let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
                needed.iter().position(|n| n.as_bytes() == inner)
            };
            p.expect(b':', "expected ':'")?;
            p.peek()?;
            let start = p.i;
            p.value(1)?;
            if let Some(f) = field {
                spans.push((f, start, p.i));
            }
            match p.peek()? {
                b',' => p.i += 1,
                b'}' => {
                    p.i += 1;
                    break;
                }
                _ => return Err(Stop::Bad("expected ',' or '}' in a record")),
            }
        }
    }
    if p.non_ascii && std::str::from_utf8(b.get(..p.i).unwrap_or_default()).is_err() {
        return Err(Stop::Bad("invalid UTF-8 in a string"));
    }
    Ok(p.i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &[u8], needed: &[&str]) -> Result<(usize, Vec<String>), Stop> {
        let needed: Vec<String> = needed.iter().map(|s| (*s).to_owned()).collect();
        let mut spans = Vec::new();
        let end = record(text, &needed, &mut spans)?;
        let vals = spans
            .iter()
            .map(|(f, s, e)| format!("{}={}", needed[*f], String::from_utf8_lossy(&text[*s..*e])))
            .collect();
        Ok((end, vals))
    }

    #[test]
    fn finds_needed_values_and_the_end() {
        let text = br#"{"a" : 1 , "b":{"c":[1,{"d":"}"}]},"t\u0069me":"2021","x":-1.5e+3} tail"#;
        let (end, vals) = run(text, &["time", "b", "x"]).unwrap();
        assert_eq!(&text[..end], &text[..text.len() - 5]);
        assert_eq!(
            vals,
            [r#"b={"c":[1,{"d":"}"}]}"#, r#"time="2021""#, "x=-1.5e+3"]
        );
        assert_eq!(run(b"{}", &["a"]).unwrap(), (2, vec![]));
        assert_eq!(
            run(" {}".as_bytes(), &[]),
            Err(Stop::Bad("a record is not an object"))
        );
    }

    #[test]
    fn agrees_with_serde_on_grammar() {
        let cases: &[&[u8]] = &[
            br#"{"a":1}"#,
            br#"{"a":-0.0e-0,"b":[true,false,null,[],{}],"c":"\"\\\/\b\f\n\r\t\u00e9"}"#,
            "{\"é\":\"ünïcödé 😀\"}".as_bytes(),
            br#"{"a":}"#,
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":.5}"#,
            br#"{"a":+1}"#,
            br#"{"a":1e}"#,
            br#"{"a":tru}"#,
            br#"{"a":nul,"b":1}"#,
            br#"{"a":[1,]}"#,
            br#"{"a":[1 2]}"#,
            br#"{"a":{"b"}}"#,
            br#"{"a":{"b":1,}}"#,
            br#"{"a":1,}"#,
            br#"{a:1}"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12G4"}"#,
            b"{\"a\":\"tab\there\"}",
            b"{\"a\":\"\xff\xfe\"}",
            b"{\"a\":\"\xc3\"}",
            br#"{"a":[}"#,
            br#"{"a":{]}"#,
            br#"{"a":1]"#,
            br#"{"a" 1}"#,
        ];
        for text in cases {
            let serde_ok = serde_json::from_slice::<serde_json::Value>(text).is_ok();
            let ours = run(text, &["a"]);
            assert_eq!(ours.is_ok(), serde_ok, "{}", String::from_utf8_lossy(text));
            if let Err(stop) = ours {
                assert!(
                    matches!(stop, Stop::Bad(_)),
                    "{}",
                    String::from_utf8_lossy(text)
                );
            }
        }
    }

    #[test]
    fn every_prefix_is_incomplete_and_never_bad() {
        let text = br#"{"a":[1,-2.5e3,{"b":"x\u00e9\"y"}],"c":true,"d":null,"e":false,"f":"long string over eight"}"#;
        for n in 0..text.len() {
            let r = run(&text[..n], &["a", "f"]);
            if n == 0 {
                assert_eq!(r, Err(Stop::Bad("a record is not an object")));
            } else {
                assert_eq!(r, Err(Stop::Incomplete), "prefix of {n}");
            }
        }
        assert!(run(text, &["a"]).is_ok());
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        let ok = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(run(ok.as_bytes(), &["a"]).is_ok());
        let deep = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(
            run(deep.as_bytes(), &[]),
            Err(Stop::Bad("JSON nested too deeply"))
        );
        let huge = format!("{{\"a\":{}", "{\"a\":".repeat(100_000));
        assert_eq!(
            run(huge.as_bytes(), &[]),
            Err(Stop::Bad("JSON nested too deeply"))
        );
    }

    #[test]
    fn swar_stops_at_the_first_special_byte() {
        for special in [b'"', b'\\', 0x00, 0x1F, 0x80, 0xFF] {
            for at in 0..8 {
                let mut w = [b'a'; 8];
                w[at] = special;
                let m = stops(u64::from_le_bytes(w));
                assert_eq!(
                    (m.trailing_zeros() / 8) as usize,
                    at,
                    "{special:#x} at {at}"
                );
            }
        }
        assert_eq!(stops(u64::from_le_bytes(*b" ~!#[]{}")), 0);
    }
}
