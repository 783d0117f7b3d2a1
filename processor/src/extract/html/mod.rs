//! Google's HTML My Activity and YouTube history (`MyActivity.html`,
//! `watch-history.html`, `search-history.html`), read as the records of
//! Google's JSON form (EXPORTS.md §1.1).
//!
//! The file is tokenised by html5ever's streaming tokenizer, fed 64 KiB at a
//! time, so memory does not grow with the file: only the record being read
//! is held (bounded by `max_record_bytes`), and a token that grows past that
//! bound (a giant attribute or comment) stops the file. Entities and
//! character references are decoded by the tokenizer; `\xa0` and other
//! wide spaces are read as spaces.
//!
//! Layout, one `div.outer-cell` per record:
//!
//! ```html
//! <div class="outer-cell …"><div class="mdl-grid">
//!   <div class="header-cell …"><p class="mdl-typography--title">YouTube<br></p></div>
//!   <div class="content-cell … mdl-typography--body-1">Watched&nbsp;<a href="URL">Title</a><br>
//!     <a href="CHANNEL_URL">Channel</a><br>Jun 23, 2015, 2:43:45 PM</div>
//!   <div class="content-cell … mdl-typography--body-1 mdl-typography--text-right"></div>
//!   <div class="content-cell … mdl-typography--caption"><b>Products:</b><br>&emsp;YouTube<br>
//!     <b>Why is this here?</b><br>…</div>
//! </div></div>
//! ```
//!
//! The body's lines (split at `<br>`) are the title (with the URL of its
//! link as `titleUrl`), the subtitles (`{name, url}`) and, last, the date
//! ([`time`]); the caption's headings (words from the catalog) give
//! `products`, `details` (`{name}`) and `locationInfos` (`{name, url,
//! source, sourceUrl}`). `description` cannot be told apart from a
//! subtitle in HTML and is never set.

pub(crate) mod time;

use std::cell::RefCell;
use std::io::Read;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use serde_json::{json, Map, Value as Json};

use super::catalog::ActivityHtmlWords;
use super::records::{bad, Emitter, Matcher, RecError};

/// Bytes read from the file per step.
const CHUNK: usize = 64 << 10;
/// Deepest nesting of `div`s followed.
const MAX_DEPTH: usize = 256;

/// What an open `div` is to the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Outer,
    Header,
    Body,
    Caption,
    Other,
}

/// One line of a cell (up to a `<br>`).
#[derive(Debug, Default)]
struct Line {
    text: String,
    /// Text inside `<b>` (caption headings).
    bold: String,
    links: Vec<String>,
}

impl Line {
    fn is_blank(&self) -> bool {
        clean(&self.text).is_empty() && self.links.is_empty()
    }
}

/// The record being read.
#[derive(Debug, Default)]
struct Building {
    header: String,
    body: Vec<Line>,
    caption: Vec<Line>,
    /// Bytes held, against `max_record`.
    bytes: usize,
    /// A body cell was read already (a second one is ignored).
    body_seen: bool,
}

#[derive(Debug, Default)]
struct State {
    stack: Vec<Role>,
    rec: Option<Building>,
    bold: usize,
    done: Vec<Map<String, Json>>,
    error: Option<String>,
    tokens: u64,
    records: u64,
}

struct Sink<'w> {
    state: RefCell<State>,
    words: &'w ActivityHtmlWords,
    max_record: usize,
}

fn classes(tag: &html5ever::tokenizer::Tag) -> Vec<String> {
    tag.attrs
        .iter()
        .filter(|a| &*a.name.local == "class")
        .flat_map(|a| {
            a.value
                .split_ascii_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn role_of(tag: &html5ever::tokenizer::Tag, in_record: bool) -> Role {
    let cls = classes(tag);
    let has = |c: &str| cls.iter().any(|x| x == c);
    if has("outer-cell") && !in_record {
        Role::Outer
    } else if !in_record {
        Role::Other
    } else if has("header-cell") {
        Role::Header
    } else if has("content-cell") && !has("mdl-typography--text-right") {
        if has("mdl-typography--caption") {
            Role::Caption
        } else if has("mdl-typography--body-1") {
            Role::Body
        } else {
            Role::Other
        }
    } else {
        Role::Other
    }
}

impl State {
    /// The cell the reader is in: the innermost one that is not `Other`.
    fn cell(&self) -> Option<Role> {
        self.stack
            .iter()
            .rev()
            .copied()
            .find(|r| *r != Role::Other && *r != Role::Outer)
    }

    fn lines(&mut self) -> Option<&mut Vec<Line>> {
        let cell = self.cell()?;
        let rec = self.rec.as_mut()?;
        match cell {
            Role::Body => Some(&mut rec.body),
            Role::Caption => Some(&mut rec.caption),
            _ => None,
        }
    }

    fn line(&mut self) -> Option<&mut Line> {
        let lines = self.lines()?;
        if lines.is_empty() {
            lines.push(Line::default());
        }
        lines.last_mut()
    }
}

impl Sink<'_> {
    fn fail(&self, st: &mut State, why: String) {
        if st.error.is_none() {
            st.error = Some(why);
        }
    }

    fn grow(&self, st: &mut State, n: usize) -> bool {
        let max = self.max_record;
        let Some(rec) = st.rec.as_mut() else {
            return true;
        };
        rec.bytes += n;
        if rec.bytes > max {
            let n = st.records + 1;
            self.fail(
                st,
                format!("record {n} is larger than {max} bytes (ALIAS_MAX_RECORD_BYTES)"),
            );
            return false;
        }
        true
    }

    fn text(&self, st: &mut State, t: &str) {
        if st.rec.is_none() || !self.grow(st, t.len()) {
            return;
        }
        match st.cell() {
            Some(Role::Header) => {
                if let Some(rec) = st.rec.as_mut() {
                    rec.header.push_str(t);
                }
            }
            Some(Role::Body | Role::Caption) => {
                let bold = st.bold > 0;
                if let Some(line) = st.line() {
                    line.text.push_str(t);
                    if bold {
                        line.bold.push_str(t);
                    }
                }
            }
            _ => {}
        }
    }

    fn tag(&self, st: &mut State, tag: html5ever::tokenizer::Tag) -> TokenSinkResult<()> {
        let name: &str = &tag.name;
        let start = tag.kind == TagKind::StartTag;
        match (name, start) {
            ("div", true) => {
                let mut role = role_of(&tag, st.rec.is_some());
                if role == Role::Body {
                    match st.rec.as_mut() {
                        Some(r) if !r.body_seen => r.body_seen = true,
                        _ => role = Role::Other,
                    }
                }
                if role == Role::Outer {
                    st.rec = Some(Building::default());
                }
                if !tag.self_closing {
                    if st.stack.len() >= MAX_DEPTH {
                        self.fail(st, format!("divs nested deeper than {MAX_DEPTH}"));
                    }
                    st.stack.push(role);
                }
            }
            ("div", false) => {
                let closed = st.stack.pop();
                if closed == Some(Role::Outer) {
                    self.finish(st);
                }
            }
            ("br", _) => {
                if let Some(lines) = st.lines() {
                    if lines.is_empty() {
                        lines.push(Line::default());
                    }
                    lines.push(Line::default());
                }
            }
            ("a", true) => {
                let href = tag
                    .attrs
                    .iter()
                    .find(|a| &*a.name.local == "href")
                    .map(|a| a.value.to_string());
                if let Some(href) = href {
                    if self.grow(st, href.len()) {
                        if let Some(line) = st.line() {
                            line.links.push(href);
                        }
                    }
                }
            }
            ("b", true) if !tag.self_closing => st.bold += 1,
            ("b", false) => st.bold = st.bold.saturating_sub(1),
            ("script", true) => return TokenSinkResult::RawData(RawKind::ScriptData),
            ("style" | "xmp" | "iframe" | "noembed" | "noframes", true) => {
                return TokenSinkResult::RawData(RawKind::Rawtext)
            }
            ("title" | "textarea", true) => return TokenSinkResult::RawData(RawKind::Rcdata),
            _ => {}
        }
        TokenSinkResult::Continue
    }

    /// Turns the record read into Google's JSON shape.
    fn finish(&self, st: &mut State) {
        let Some(rec) = st.rec.take() else {
            return;
        };
        st.records += 1;
        match self.record(rec, st.records) {
            Ok(r) => st.done.push(r),
            Err(why) => self.fail(st, why),
        }
    }

    fn record(&self, rec: Building, n: u64) -> Result<Map<String, Json>, String> {
        let mut body = rec.body;
        while body.last().is_some_and(Line::is_blank) {
            body.pop();
        }
        let Some(date) = body.pop() else {
            return Err(format!("record {n} has no body cell with a date"));
        };
        let date_text = clean(&date.text);
        let secs = time::parse(&date_text, &self.words.months).ok_or_else(|| {
            let shown: String = date_text.chars().take(60).collect();
            format!("record {n}: the date {shown:?} is in a form the bank cannot read")
        })?;
        let mut lines = body.into_iter();
        let Some(title) = lines.next() else {
            return Err(format!("record {n} has a date but no title"));
        };
        let mut out = Map::new();
        let header = clean(&rec.header);
        if !header.is_empty() {
            out.insert("header".into(), Json::String(header));
        }
        out.insert("title".into(), Json::String(clean(&title.text)));
        if let Some(url) = title.links.last() {
            out.insert("titleUrl".into(), Json::String(url.clone()));
        }
        let subtitles: Vec<Json> = lines
            .filter(|l| !l.is_blank())
            .map(|l| {
                let mut s = Map::new();
                s.insert("name".into(), Json::String(clean(&l.text)));
                if let Some(url) = l.links.last() {
                    s.insert("url".into(), Json::String(url.clone()));
                }
                Json::Object(s)
            })
            .collect();
        if !subtitles.is_empty() {
            out.insert("subtitles".into(), Json::Array(subtitles));
        }
        out.insert("time".into(), Json::String(time::iso(secs)));
        let (mut products, mut details, mut locations) = (Vec::new(), Vec::new(), Vec::new());
        let mut section: Option<&str> = None;
        let w = self.words;
        for line in rec.caption {
            let bold = clean(&line.bold);
            if !bold.is_empty() && clean(&line.text) == bold {
                section = if w.products.contains(&bold) {
                    Some("products")
                } else if w.details.contains(&bold) {
                    Some("details")
                } else if w.locations.contains(&bold) {
                    Some("locations")
                } else {
                    None
                };
                continue;
            }
            if line.is_blank() {
                continue;
            }
            let text = clean(&line.text);
            match section {
                Some("products") => products.push(Json::String(text)),
                Some("details") => details.push(json!({ "name": text })),
                Some("locations") => locations.push(location(&text, &line.links)),
                _ => {}
            }
        }
        for (key, list) in [
            ("products", products),
            ("details", details),
            ("locationInfos", locations),
        ] {
            if !list.is_empty() {
                out.insert(key.into(), Json::Array(list));
            }
        }
        Ok(out)
    }
}

/// A `Locations:` line: `At <a>this general area</a> - From <a>your
/// places</a> (Home)` → name, url, source, sourceUrl.
fn location(text: &str, links: &[String]) -> Json {
    let (mut name, mut source) = match text.split_once(" - ") {
        Some((n, s)) => (Some(n.trim().to_owned()), Some(s.trim().to_owned())),
        None => (None, None),
    };
    let (mut url, mut source_url) = (None, None);
    match links {
        [a, b, ..] => {
            url = Some(a.clone());
            source_url = Some(b.clone());
        }
        [a] if a.contains("/maps") => {
            url = Some(a.clone());
            name.get_or_insert_with(|| text.to_owned());
        }
        [a] => {
            source_url = Some(a.clone());
            source.get_or_insert_with(|| text.to_owned());
        }
        [] => {
            if source.is_none() {
                source = Some(text.to_owned());
            }
        }
    }
    let mut m = Map::new();
    for (k, v) in [
        ("name", name),
        ("url", url),
        ("source", source),
        ("sourceUrl", source_url),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), Json::String(v));
        }
    }
    Json::Object(m)
}

/// Text with `\xa0`, em and other wide spaces read as spaces, trimmed.
fn clean(s: &str) -> String {
    let spaced: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '\u{200b}' {
                ' '
            } else {
                c
            }
        })
        .collect();
    spaced.trim().to_owned()
}

impl TokenSink for Sink<'_> {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut st = self.state.borrow_mut();
        st.tokens += 1;
        if st.error.is_some() {
            return TokenSinkResult::Continue;
        }
        match token {
            Token::CharacterTokens(t) => self.text(&mut st, &t),
            Token::TagToken(tag) => return self.tag(&mut st, tag),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// Reads the records of an HTML My Activity file, calling `each` with each
/// in file order. A file that is not one (bad UTF-8, a date in an unknown
/// form, a record or token past `max_record` bytes) is a
/// [`RecError::Format`]; read failures are [`RecError::Io`].
pub(crate) fn activities<R: Read>(
    mut r: R,
    words: &ActivityHtmlWords,
    max_record: usize,
    mut each: impl FnMut(Map<String, Json>) -> Result<(), RecError>,
) -> Result<(), RecError> {
    let tok = Tokenizer::new(
        Sink {
            state: RefCell::new(State::default()),
            words,
            max_record,
        },
        TokenizerOpts::default(),
    );
    let queue = BufferQueue::default();
    let mut buf = vec![0u8; CHUNK];
    let mut carry = 0usize;
    // Bytes fed since the tokenizer last emitted a token.
    let mut quiet = 0usize;
    let mut last_tokens = 0u64;
    let mut drain = |tok: &Tokenizer<Sink<'_>>| -> Result<(), RecError> {
        let (done, error) = {
            let mut st = tok.sink.state.borrow_mut();
            (std::mem::take(&mut st.done), st.error.take())
        };
        for rec in done {
            each(rec)?;
        }
        match error {
            Some(why) => Err(bad(why)),
            None => Ok(()),
        }
    };
    loop {
        let n = r.read(buf.get_mut(carry..).unwrap_or_default())?;
        let filled = carry + n;
        let data = buf.get(..filled).unwrap_or_default();
        let valid = match std::str::from_utf8(data) {
            Ok(s) => s,
            Err(e) if e.error_len().is_none() && n > 0 => {
                // A character cut at the chunk's end: kept for the next.
                std::str::from_utf8(data.get(..e.valid_up_to()).unwrap_or_default())
                    .map_err(|_| bad("not UTF-8 text"))?
            }
            Err(_) => return Err(bad("not UTF-8 text")),
        };
        let used = valid.len();
        if !valid.is_empty() {
            queue.push_back(StrTendril::from_slice(valid));
            let _ = tok.feed(&queue);
        }
        drain(&tok)?;
        let tokens = tok.sink.state.borrow().tokens;
        if tokens == last_tokens {
            quiet += used;
            if quiet > max_record {
                return Err(bad(format!(
                    "an HTML token longer than {max_record} bytes (ALIAS_MAX_RECORD_BYTES)"
                )));
            }
        } else {
            (quiet, last_tokens) = (0, tokens);
        }
        buf.copy_within(used..filled, 0);
        carry = filled - used;
        if n == 0 {
            break;
        }
    }
    tok.end();
    {
        // A record still open at the end of the file ends with it.
        let sink = &tok.sink;
        let mut st = sink.state.borrow_mut();
        if st.rec.is_some() {
            sink.finish(&mut st);
        }
    }
    drain(&tok)
}

/// Filters an HTML My Activity file: each record is matched and projected
/// as its JSON form would be, and kept ones are written as a JSON array.
pub(crate) fn filter<R: Read>(
    r: R,
    words: &ActivityHtmlWords,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
) -> Result<(), RecError> {
    em.context(b"[")?;
    let max = m.max_record();
    let mut written = 0u64;
    let mut raw = Vec::new();
    activities(r, words, max, |rec| {
        raw.clear();
        serde_json::to_writer(&mut raw, &rec).map_err(|e| bad(format!("re-encoding: {e}")))?;
        let prefix: &[u8] = if written > 0 { b"," } else { b"" };
        if m.json_record(&raw, prefix, em)? {
            written += 1;
        }
        Ok(())
    })?;
    em.context(b"]")?;
    Ok(())
}

#[cfg(test)]
mod tests;
