//! JSON scanning: finding the records of JSON arrays, objects and NDJSON
//! lines without building a tree.

use std::io::BufRead;

use super::{bad, Emitter, Matcher, RecError};

/// Deepest nesting the scanner follows.
const MAX_DEPTH: usize = 512;

/// Finds JSON values in a byte stream without parsing them.
pub(crate) struct Scanner<R> {
    r: R,
}

impl<R: BufRead> Scanner<R> {
    pub(crate) fn new(r: R) -> Self {
        Scanner { r }
    }

    /// The next non-whitespace byte, not consumed; `None` at the end.
    fn peek(&mut self) -> Result<Option<u8>, RecError> {
        loop {
            let buf = self.r.fill_buf()?;
            let Some(first) = buf.first().copied() else {
                return Ok(None);
            };
            let ws = buf
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
            match ws {
                Some(0) => return Ok(Some(first)),
                Some(n) => {
                    self.r.consume(n);
                    let next = self.r.fill_buf()?.first().copied();
                    if let Some(b) = next {
                        if !matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                            return Ok(Some(b));
                        }
                    }
                }
                None => {
                    let n = buf.len();
                    self.r.consume(n);
                }
            }
        }
    }

    fn bump(&mut self) {
        self.r.consume(1);
    }

    /// Skips a UTF-8 byte order mark at the start.
    pub(super) fn skip_bom(&mut self) -> Result<(), RecError> {
        let buf = self.r.fill_buf()?;
        if buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.r.consume(3);
        }
        Ok(())
    }

    fn expect_end(&mut self) -> Result<(), RecError> {
        match self.peek()? {
            None => Ok(()),
            Some(_) => Err(bad("data after the end of the JSON value")),
        }
    }

    /// Reads one value, copying it into `out` when given (at most `limit`
    /// bytes), skipping it otherwise. Checks structure (brackets, strings),
    /// not grammar: kept bytes are parsed afterwards.
    fn value(&mut self, mut out: Option<&mut Vec<u8>>, limit: usize) -> Result<(), RecError> {
        let first = self.peek()?.ok_or_else(|| bad("unexpected end of JSON"))?;
        if !matches!(first, b'{' | b'[' | b'"') {
            // A scalar: up to the next delimiter.
            let mut total = 0usize;
            loop {
                let buf = self.r.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                let end = buf
                    .iter()
                    .position(|b| {
                        matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n' | b':')
                    })
                    .unwrap_or(buf.len());
                total += end;
                if total > limit {
                    return Err(bad(format!("value larger than {limit} bytes")));
                }
                if let (Some(o), Some(part)) = (out.as_deref_mut(), buf.get(..end)) {
                    o.extend_from_slice(part);
                }
                let more = end == buf.len();
                self.r.consume(end);
                if !more {
                    break;
                }
            }
            if total == 0 {
                return Err(bad("unexpected character in JSON"));
            }
            return Ok(());
        }
        let mut depth = 0usize;
        let mut in_str = false;
        let mut esc = false;
        let mut total = 0usize;
        loop {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Err(bad("JSON ends in the middle of a value"));
            }
            let mut i = 0usize;
            let mut done = false;
            while i < buf.len() {
                if in_str && !esc {
                    // Jump to the next quote or backslash.
                    match buf
                        .get(i..)
                        .and_then(|rest| rest.iter().position(|b| *b == b'"' || *b == b'\\'))
                    {
                        Some(p) => i += p,
                        None => {
                            i = buf.len();
                            break;
                        }
                    }
                }
                let b = buf.get(i).copied().unwrap_or(0);
                i += 1;
                if in_str {
                    if esc {
                        esc = false;
                    } else if b == b'\\' {
                        esc = true;
                    } else if b == b'"' {
                        in_str = false;
                        if depth == 0 {
                            done = true;
                            break;
                        }
                    }
                    continue;
                }
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => {
                        depth += 1;
                        if depth > MAX_DEPTH {
                            return Err(bad("JSON nested too deeply"));
                        }
                    }
                    b'}' | b']' => {
                        if depth == 0 {
                            return Err(bad("unbalanced JSON brackets"));
                        }
                        depth -= 1;
                        if depth == 0 {
                            done = true;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            total += i;
            if out.is_some() && total > limit {
                return Err(bad(format!(
                    "record larger than {limit} bytes (limit max_record_bytes)"
                )));
            }
            if let (Some(o), Some(part)) = (out.as_deref_mut(), buf.get(..i)) {
                o.extend_from_slice(part);
            }
            self.r.consume(i);
            if done {
                return Ok(());
            }
        }
    }

    /// Reads `"…"` raw, and the key it holds.
    fn key(&mut self, raw: &mut Vec<u8>) -> Result<String, RecError> {
        if self.peek()? != Some(b'"') {
            return Err(bad("expected an object key"));
        }
        raw.clear();
        self.value(Some(raw), 1 << 16)?;
        serde_json::from_slice(raw).map_err(|e| bad(format!("bad object key: {e}")))
    }

    /// Handles the record object starting at the next byte: in place, in
    /// one pass, when the reader's buffer holds all of it; else copied
    /// into `buf` first (a record across two fills of the buffer).
    fn record(
        &mut self,
        m: &mut Matcher<'_>,
        prefix: &[u8],
        em: &mut Emitter<'_>,
        buf: &mut Vec<u8>,
    ) -> Result<bool, RecError> {
        let avail = self.r.fill_buf()?;
        if let Some((kept, len)) = m.json_record_at(avail, prefix, em)? {
            self.r.consume(len);
            return Ok(kept);
        }
        buf.clear();
        self.value(Some(buf), m.max_record)?;
        m.json_record(buf, prefix, em)
    }

    fn colon(&mut self) -> Result<(), RecError> {
        if self.peek()? != Some(b':') {
            return Err(bad("expected ':'"));
        }
        self.bump();
        Ok(())
    }
}

/// Reads the records of an array after its `[`, up to and including `]`.
fn array_records<R: BufRead>(
    sc: &mut Scanner<R>,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
    buf: &mut Vec<u8>,
) -> Result<(), RecError> {
    let mut written = 0u64;
    if sc.peek()? == Some(b']') {
        sc.bump();
        return Ok(());
    }
    loop {
        if sc.peek()? != Some(b'{') {
            return Err(bad("an array item is not an object"));
        }
        let prefix: &[u8] = if written > 0 { b"," } else { b"" };
        if sc.record(m, prefix, em, buf)? {
            written += 1;
        }
        match sc.peek()? {
            Some(b',') => sc.bump(),
            Some(b']') => {
                sc.bump();
                return Ok(());
            }
            Some(_) => return Err(bad("expected ',' or ']' in an array")),
            None => return Err(bad("JSON ends inside an array")),
        }
    }
}

pub(super) fn json_array<R: BufRead>(
    sc: &mut Scanner<R>,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
) -> Result<(), RecError> {
    if sc.peek()? != Some(b'[') {
        return Err(bad("expected a JSON array"));
    }
    sc.bump();
    em.context(b"[")?;
    let mut buf = Vec::new();
    array_records(sc, m, em, &mut buf)?;
    sc.expect_end()?;
    em.context(b"]")?;
    Ok(())
}

pub(super) fn json_object<R: BufRead>(
    sc: &mut Scanner<R>,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
) -> Result<(), RecError> {
    if sc.peek()? != Some(b'{') {
        return Err(bad("expected a JSON object"));
    }
    let rule = m.rule;
    if rule.keys.is_empty() {
        // The object is one record.
        let mut buf = Vec::new();
        sc.value(Some(&mut buf), m.max_record)?;
        sc.expect_end()?;
        m.json_record(&buf, b"", em)?;
        return Ok(());
    }
    sc.bump();
    em.context(b"{")?;
    let mut members = 0u64;
    let mut found = false;
    let mut kraw = Vec::new();
    let mut buf = Vec::new();
    if sc.peek()? == Some(b'}') {
        sc.bump();
    } else {
        loop {
            let key = sc.key(&mut kraw)?;
            sc.colon()?;
            let sep: &[u8] = if members > 0 { b"," } else { b"" };
            if rule.keys.contains(&key) {
                found = true;
                match sc.peek()? {
                    Some(b'[') => {
                        sc.bump();
                        let mut head = sep.to_vec();
                        head.extend_from_slice(&kraw);
                        head.extend_from_slice(b":[");
                        em.context(&head)?;
                        array_records(sc, m, em, &mut buf)?;
                        em.context(b"]")?;
                        members += 1;
                    }
                    Some(b'{') => {
                        buf.clear();
                        sc.value(Some(&mut buf), m.max_record)?;
                        let mut head = sep.to_vec();
                        head.extend_from_slice(&kraw);
                        head.push(b':');
                        if m.json_record(&buf, &head, em)? {
                            members += 1;
                        }
                    }
                    _ => sc.value(None, usize::MAX)?,
                }
            } else if rule.context_keys.contains(&key) {
                buf.clear();
                sc.value(Some(&mut buf), m.max_record)?;
                let mut member = sep.to_vec();
                member.extend_from_slice(&kraw);
                member.push(b':');
                member.extend_from_slice(&buf);
                em.context(&member)?;
                members += 1;
            } else {
                sc.value(None, usize::MAX)?;
            }
            match sc.peek()? {
                Some(b',') => sc.bump(),
                Some(b'}') => {
                    sc.bump();
                    break;
                }
                Some(_) => return Err(bad("expected ',' or '}' in an object")),
                None => return Err(bad("JSON ends inside an object")),
            }
        }
    }
    sc.expect_end()?;
    if !found {
        return Err(bad(format!(
            "none of the keys {:?} is in the object",
            rule.keys
        )));
    }
    em.context(b"}")?;
    Ok(())
}

pub(super) fn ndjson<R: BufRead>(
    r: &mut R,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
) -> Result<(), RecError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        // A line, bounded by the record limit.
        let mut end = false;
        loop {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                end = true;
                break;
            }
            let (take, nl) = match buf.iter().position(|b| *b == b'\n') {
                Some(p) => (p + 1, true),
                None => (buf.len(), false),
            };
            if line.len() + take > m.max_record {
                return Err(bad(format!("line longer than {} bytes", m.max_record)));
            }
            line.extend_from_slice(buf.get(..take).unwrap_or_default());
            r.consume(take);
            if nl {
                break;
            }
        }
        let text = line.trim_ascii();
        if !text.is_empty() {
            if !text.starts_with(b"{") {
                return Err(bad("a line is not a JSON object"));
            }
            let text = text.to_vec();
            let prefix: &[u8] = if em.records > 0 { b"\n" } else { b"" };
            m.json_record(&text, prefix, em)?;
        }
        if end {
            em.context(b"\n")?;
            return Ok(());
        }
    }
}
