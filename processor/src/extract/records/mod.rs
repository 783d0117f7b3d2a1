//! Reading the records of one file, keeping those a scope matches, and
//! writing the filtered file.
//!
//! JSON is read with a small scanner that finds each record's bytes without
//! building a tree; a record is then parsed with only the fields the scope
//! needs (predicates, projection, references). A kept record that is not
//! projected is written as its original bytes, so a filtered file is a
//! subset of the dump's records, byte for byte.

mod csv_rows;
mod matcher;
mod onepass;
mod scan;
mod time;

use std::io::{self, BufRead};

use protocol::scope::Scope;
use serde_json::Map;

use crate::extract::catalog::{ActivityHtmlWords, RecordFormat};

use csv_rows::csv_records;
pub(crate) use matcher::Matcher;
use scan::{json_array, json_object, ndjson, Scanner};

/// Why reading a file's records stopped.
#[derive(Debug)]
pub(crate) enum RecError {
    /// The bytes could not be read (corrupt or truncated dump, limit): ends
    /// the transfer.
    Io(io::Error),
    /// The file is not what the catalog expects: the file is skipped.
    Format(String),
}

impl From<io::Error> for RecError {
    fn from(e: io::Error) -> Self {
        RecError::Io(e)
    }
}

/// A format error with this message.
pub(super) fn bad(msg: impl Into<String>) -> RecError {
    RecError::Format(msg.into())
}

// ---------------------------------------------------------------------------
// Output

/// Where a filtered file goes: the entry is started only when the first
/// record is kept.
pub(crate) trait Sink {
    /// Starts the output entry.
    fn begin(&mut self) -> io::Result<()>;
    /// Writes bytes of the entry.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Writes one kept record: `prefix` (a separator) then its `body`.
    fn record(&mut self, prefix: &[u8], body: &[u8]) -> io::Result<()> {
        self.write(prefix)?;
        self.write(body)
    }
}

/// Holds the framing (`[`, wrapper keys, CSV header) until a record is
/// kept, so that a file without kept records leaves nothing behind.
pub(crate) struct Emitter<'a> {
    sink: Option<&'a mut dyn Sink>,
    started: bool,
    pending: Vec<u8>,
    /// Records written.
    pub(crate) records: u64,
}

impl<'a> Emitter<'a> {
    /// An emitter writing to `sink`, or only counting when `None`.
    pub(crate) fn new(sink: Option<&'a mut dyn Sink>) -> Self {
        Emitter {
            sink,
            started: false,
            pending: Vec::new(),
            records: 0,
        }
    }

    /// Whether the output entry was started.
    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// Framing bytes, written once a record is kept.
    pub(super) fn context(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.started {
            if let Some(s) = self.sink.as_deref_mut() {
                s.write(bytes)?;
            }
        } else {
            self.pending.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn record(&mut self, prefix: &[u8], body: &[u8]) -> io::Result<()> {
        if !self.started {
            self.started = true;
            if let Some(s) = self.sink.as_deref_mut() {
                s.begin()?;
                s.write(&self.pending)?;
            }
            self.pending = Vec::new();
        }
        if let Some(s) = self.sink.as_deref_mut() {
            s.record(prefix, body)?;
        }
        self.records += 1;
        Ok(())
    }
}

static NO_WORDS: ActivityHtmlWords = ActivityHtmlWords {
    months: Vec::new(),
    products: Vec::new(),
    locations: Vec::new(),
    details: Vec::new(),
};

/// Filters one file of `format` read from `r`.
pub(crate) fn filter<R: BufRead>(
    format: RecordFormat,
    r: R,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
) -> Result<(), RecError> {
    match format {
        RecordFormat::JsonArray | RecordFormat::JsonObject => {
            let mut sc = Scanner::new(r);
            sc.skip_bom()?;
            if format == RecordFormat::JsonArray {
                json_array(&mut sc, m, em)
            } else {
                json_object(&mut sc, m, em)
            }
        }
        RecordFormat::Ndjson => {
            let mut r = r;
            ndjson(&mut r, m, em)
        }
        RecordFormat::Csv => csv_records(r, m, em),
        RecordFormat::ActivityHtml => {
            let words = m.words.unwrap_or(&NO_WORDS);
            super::html::filter(r, words, m, em)
        }
        RecordFormat::Binary | RecordFormat::Unreadable => Err(bad("binary files have no records")),
    }
}

/// Whether the empty record `{}` matches the scope (what binary files
/// without records are judged by).
pub(crate) fn empty_record_matches(scope: &Scope) -> bool {
    scope
        .predicates
        .iter()
        .all(|p| matches!(p.holds(&Map::new(), None), Ok(true)))
}

#[cfg(test)]
mod tests {
    use super::matcher::fix_string;
    use super::*;
    use crate::extract::catalog::{FileRule, ProviderCatalog, TextEncoding};
    use protocol::scope::Record;

    fn rule(extra: &str, format: &str) -> FileRule {
        let text = format!(
            "provider = \"p\"\nname = \"n\"\ndescription = \"d\"\n[[path]]\nid = \"a\"\ndescription = \"x\"\n[[path.files]]\npatterns = [\"*\"]\nformat = \"{format}\"\n{extra}\n"
        );
        let c = ProviderCatalog::parse("t", &text).unwrap();
        c.paths[0].files[0].clone()
    }

    struct VecSink(Vec<u8>, bool);
    impl Sink for VecSink {
        fn begin(&mut self) -> io::Result<()> {
            self.1 = true;
            Ok(())
        }
        fn write(&mut self, b: &[u8]) -> io::Result<()> {
            self.0.extend_from_slice(b);
            Ok(())
        }
    }

    fn run(rule: &FileRule, scope: &str, input: &str) -> Result<(String, u64, u64), RecError> {
        let scope = Scope::parse(scope).unwrap();
        let mut m = Matcher::new(&scope, rule, TextEncoding::Utf8, "d/f.json", 1 << 20);
        let mut sink = VecSink(Vec::new(), false);
        let mut em = Emitter::new(Some(&mut sink));
        filter(rule.format, input.as_bytes(), &mut m, &mut em)?;
        let n = em.records;
        Ok((String::from_utf8(sink.0).unwrap(), m.seen, n))
    }

    #[test]
    fn instant_matching_equals_the_reference() {
        let formats = [
            ("iso8601", ""),
            ("epoch_ms", ""),
            ("epoch_us", ""),
            ("epoch_s", ""),
            ("us_datetime", ""),
            ("dd_mon_yyyy", ""),
            ("iso8601", ", at = \"ts\""),
        ];
        let values = [
            r#""2021-06-01T00:00:00.123Z""#,
            r#""2021-06-01""#,
            r#""2021-06-01T02:00:00+02:00""#,
            r#""2021-06-01 and 2022-01-01""#,
            r#""06/01/2021 10:11:12 UTC""#,
            r#""01-Jun-2021""#,
            r#""1622505600000""#,
            r#""1622505600.5""#,
            "1622505600",
            "1622505600000",
            "1622505600000000",
            "-1",
            "253402300800",
            "253402300800000",
            r#""9999-12-31T23:59:59.999999999Z""#,
            r#""0000-01-01""#,
            r#""not a date""#,
            r#""2021""#,
            "null",
            "true",
            r#"{"ts":"2021-06-01T00:00:00Z"}"#,
            r#"{"ts":1622505600}"#,
            "[1]",
        ];
        let predicates = [
            "time>=2021-06-01",
            "time<2021-06-01T00:00:00.123Z",
            "time=2021-06-01",
            "time!=\"2021\"",
            "time>1622505600",
            "time<=\"1622505600000\"",
            "time>=x",
            "time<5",
            "has time",
            "time>=2021-01-01,title=a",
        ];
        for (format, extra) in formats {
            let r = rule(
                &format!("time = [{{ field = \"time\", format = \"{format}\"{extra} }}]"),
                "json_array",
            );
            for pred in predicates {
                let scope = Scope::parse(&format!("p.a[{pred}].*")).unwrap();
                let m = Matcher::new(&scope, &r, TextEncoding::Utf8, "d/f.json", 1 << 20);
                for v in values {
                    let rec: Record =
                        serde_json::from_str(&format!(r#"{{"title":"a","time":{v}}}"#)).unwrap();
                    assert_eq!(
                        m.matches(&rec),
                        m.matches_slow(&rec),
                        "{format}{extra} [{pred}] on {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn array_filters_and_keeps_bytes() {
        let r = rule(
            "time = [{ field = \"time\", format = \"iso8601\" }]",
            "json_array",
        );
        let input = r#" [ {"title":"a\u003db","time":"2020-01-01T00:00:00Z"} ,
            {"title":"b","time":"2021-06-01T00:00:00.123Z","x":[1,{"y":"]"}]}, {"title":"c"} ] "#;
        let (out, seen, n) = run(&r, "p.a[time>=2021-01-01].*", input).unwrap();
        assert_eq!((seen, n), (3, 1));
        assert_eq!(
            out,
            r#"[{"title":"b","time":"2021-06-01T00:00:00.123Z","x":[1,{"y":"]"}]}]"#
        );
        let (out, _, n) = run(&r, "p.a[has title].{time}", input).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            out,
            r#"[{"time":"2020-01-01T00:00:00Z"},{"time":"2021-06-01T00:00:00.123Z"},{}]"#
        );
        let (out, _, n) = run(&r, "p.a[title=zzz].*", input).unwrap();
        assert_eq!((out.as_str(), n), ("", 0));
        let (out, _, _) = run(&r, "p.a[title=\"a=b\"].*", input).unwrap();
        assert!(out.contains("a\\u003db"), "{out}");
    }

    #[test]
    fn object_keys_and_context() {
        let r = rule(
            "keys = [\"messages\"]\ncontext_keys = [\"title\"]\ntime = [{ field = \"timestamp_ms\", format = \"epoch_ms\" }]",
            "json_object",
        );
        let input = r#"{"participants":[{"name":"x"}],"messages":[{"timestamp_ms":1596910928321,"content":"hi"},{"timestamp_ms":1000}],"title":"T"}"#;
        let (out, _, n) = run(&r, "p.a[timestamp_ms>2020-01-01].*", input).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out,
            r#"{"messages":[{"timestamp_ms":1596910928321,"content":"hi"}],"title":"T"}"#
        );
        let (out, _, _) = run(&r, "p.a[timestamp_ms>2030-01-01].*", input).unwrap();
        assert_eq!(out, "");
        assert!(matches!(
            run(&r, "p.a.*", r#"{"other":[]}"#),
            Err(RecError::Format(_))
        ));
        assert!(matches!(
            run(&r, "p.a.*", r#"[{"a":1}]"#),
            Err(RecError::Format(_))
        ));
    }

    #[test]
    fn single_object_record_with_nested_time() {
        let r = rule(
            "time = [{ field = \"photoTakenTime\", at = \"timestamp\", format = \"epoch_s\" }]",
            "json_object",
        );
        let input =
            r#"{"title":"IMG_1.jpg","photoTakenTime":{"timestamp":"1688127753","formatted":"x"}}"#;
        assert_eq!(
            run(&r, "p.a[photoTakenTime>=2023-06-30].*", input)
                .unwrap()
                .2,
            1
        );
        assert_eq!(
            run(&r, "p.a[photoTakenTime<2023-06-30].*", input)
                .unwrap()
                .2,
            0
        );
        assert_eq!(
            run(&r, "p.a[photoTakenTime<2023-06-30T12:22:34Z].*", input)
                .unwrap()
                .2,
            1
        );
    }

    #[test]
    fn csv_rows() {
        let r = rule(
            "time = [{ field = \"Order Date\", format = \"us_datetime\" }]",
            "csv",
        );
        let input = "\u{feff}\"Website\",\"Order Date\",\"Address\"\r\n\"a.com\",\"2024-03-02T17:45:10.123Z and 2024-03-03T00:00:00Z\",\"1\nSt\"\r\n\"b.com\",\"11/11/2021 22:32:48 UTC\",\"x\"\r\n";
        let (out, seen, n) = run(&r, "p.a[\"Order Date\">=2022-01-01].*", input).unwrap();
        assert_eq!((seen, n), (2, 1));
        assert!(
            out.starts_with("\u{feff}\"Website\",\"Order Date\",\"Address\"\r\n\"a.com\""),
            "{out}"
        );
        let (out, _, n) = run(&r, "p.a[\"Order Date\"<2022-01-01].{Website}", input).unwrap();
        assert_eq!(n, 1);
        assert_eq!(out, "\u{feff}\"Website\"\r\n\"b.com\"\r\n");
        let r2 = rule(
            "time = [{ field = \"D\", format = \"dd_mon_yyyy\" }]",
            "csv",
        );
        let (_, _, n) = run(
            &r2,
            "p.a[D>2018-02-06].*",
            "D,T\n07-FEB-2018,x\n05-FEB-2018,y\n",
        )
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn ndjson_lines() {
        let r = rule("time = [{ field = \"t\", format = \"epoch_s\" }]", "ndjson");
        let input = "{\"t\":1}\n\n{\"t\":1700000000,\"a\":[1]}\r\n{\"t\":1800000000}";
        let (out, seen, n) = run(&r, "p.a[t>=2020-01-01].*", input).unwrap();
        assert_eq!((seen, n), (3, 2));
        assert_eq!(out, "{\"t\":1700000000,\"a\":[1]}\n{\"t\":1800000000}\n");
        assert!(matches!(
            run(&r, "p.a.*", "[1]\n"),
            Err(RecError::Format(_))
        ));
    }

    #[test]
    fn hostile_json_is_a_format_error() {
        let r = rule("", "json_array");
        for input in [
            "",
            "{}",
            "[1,2]",
            "[{\"a\":1}",
            "[{\"a\":1}] x",
            "[{\"a\":}]",
            "[{\"a\":1},]",
            "]",
            &"[".repeat(10_000),
            &format!("[{}]", "{\"a\":".repeat(600)),
        ] {
            assert!(
                matches!(run(&r, "p.a[has a].*", input), Err(RecError::Format(_))),
                "{input:.40}"
            );
        }
    }

    #[test]
    fn one_pass_parse_equals_the_two_pass_reference() {
        let r = rule(
            "time = [{ field = \"time\", format = \"iso8601\" }]",
            "json_array",
        );
        let records = [
            r#"{"title":"a","time":"2021-06-01T00:00:00Z"}"#,
            r#"{ "time" : 5 , "title" : [1, {"x": "y"}], "other": {"title": 1} }"#,
            r#"{"t\u0069tle":"escaped key","title":"second wins"}"#,
            r#"{"title":"x","title":"y"}"#,
            r#"{"title":"Caf\u00e9 ☕","time":null,"z":[true,false,null,-1.5e-7]}"#,
            r#"{}"#,
            r#"{"title":{"a":[[[]]]},"time":{"ts":"2021"}}  "#,
            r#"{"title":"a"} x"#,
            r#"{"title":"a",}"#,
            r#"{"title":01}"#,
            r#"{"other":tru,"title":"a"}"#,
            r#"{"title":"a""#,
            r#"{"title":"\ud800"}"#,
            "{\"title\":\"\u{7f}\"}",
        ];
        for fields in ["{title}", "{time,title}", "*"] {
            let scope = Scope::parse(&format!("p.a[has title].{fields}")).unwrap();
            let mut m = Matcher::new(&scope, &r, TextEncoding::Utf8, "d/f.json", 1 << 20);
            for text in records {
                let slow = m.parse_slow(text.as_bytes()).map_err(|_| ());
                let fast = m.parse(text.as_bytes()).map_err(|_| ());
                assert_eq!(fast, slow, "{fields} on {text}");
            }
        }
    }

    #[test]
    fn hostile_bytes_are_format_errors_through_any_buffer() {
        let r = rule("", "json_array");
        let scope = Scope::parse("p.a[has a].*").unwrap();
        let huge = format!("[{{\"a\":\"{}\"}}]", "x".repeat(3 << 20));
        let many = r#"{"a":"r\u00e9cord é"},"#.repeat(20_000);
        let cases: Vec<Vec<u8>> = vec![
            b"[{\"a\":\"\xff\"}]".to_vec(),
            b"[{\"a\":1,\"b\":\"ok\"},{\"a\":1,\"b\":\"\xc3\"}]".to_vec(),
            huge.into_bytes(),
            format!("[{many}").into_bytes(),
            format!("[{many}{{\"a\":[1,{{\"b\":").into_bytes(),
            format!("[{many}{{\"a\":{}1{}}}]", "[".repeat(200), "]".repeat(200)).into_bytes(),
        ];
        for input in &cases {
            for capacity in [7, 4096, 1 << 20] {
                let mut m = Matcher::new(&scope, &r, TextEncoding::Utf8, "d/f.json", 1 << 20);
                let mut em = Emitter::new(None);
                let reader = io::BufReader::with_capacity(capacity, &input[..]);
                let res = filter(r.format, reader, &mut m, &mut em);
                assert!(
                    matches!(res, Err(RecError::Format(_))),
                    "{capacity}: {:.60}",
                    String::from_utf8_lossy(input)
                );
            }
        }
        // The same records whatever the buffer cuts them at.
        let input = format!("[{}{{\"a\":0}}]", many);
        let mut outs = Vec::new();
        for capacity in [7, 100, 4096, 1 << 20] {
            let mut m = Matcher::new(&scope, &r, TextEncoding::Utf8, "d/f.json", 1 << 20);
            let mut sink = VecSink(Vec::new(), false);
            let mut em = Emitter::new(Some(&mut sink));
            let reader = io::BufReader::with_capacity(capacity, input.as_bytes());
            filter(r.format, reader, &mut m, &mut em).unwrap();
            assert_eq!(em.records, 20_001);
            outs.push(sink.0);
        }
        assert!(outs.iter().all(|o| *o == input.as_bytes()));
    }

    #[test]
    fn references_follow_projection() {
        let r = rule(
            "references = [{ field = \"audioFiles\", base = \"dir\" }]",
            "json_array",
        );
        let scope = Scope::parse("p.a[has title].*").unwrap();
        let input = r#"[{"title":"x","audioFiles":["A.mp3","../../etc/passwd"]}]"#;
        let mut m = Matcher::new(
            &scope,
            &r,
            TextEncoding::Utf8,
            "T/Assistant/MyActivity.json",
            1 << 20,
        );
        let mut em = Emitter::new(None);
        filter(r.format, input.as_bytes(), &mut m, &mut em).unwrap();
        assert_eq!(m.refs_exact, vec!["t/assistant/a.mp3".to_owned()]);
        let scope = Scope::parse("p.a[has title].{title}").unwrap();
        let mut m = Matcher::new(
            &scope,
            &r,
            TextEncoding::Utf8,
            "T/Assistant/MyActivity.json",
            1 << 20,
        );
        let mut em = Emitter::new(None);
        filter(r.format, input.as_bytes(), &mut m, &mut em).unwrap();
        assert!(m.refs_exact.is_empty());
    }

    #[test]
    fn mojibake_is_repaired_for_matching() {
        let r = rule("", "json_array");
        let scope = Scope::parse("p.a[title=\"Café\"].*").unwrap();
        let input = r#"[{"title":"Caf\u00c3\u00a9"}]"#;
        let mut m = Matcher::new(&scope, &r, TextEncoding::FacebookMojibake, "f", 1 << 20);
        let mut sink = VecSink(Vec::new(), false);
        let mut em = Emitter::new(Some(&mut sink));
        filter(r.format, input.as_bytes(), &mut m, &mut em).unwrap();
        assert_eq!(em.records, 1);
        assert_eq!(String::from_utf8(sink.0).unwrap(), input);
        assert_eq!(fix_string("Z\u{c3}\u{bc}rich"), "Zürich");
        assert_eq!(fix_string("\u{e9}t\u{e9}"), "\u{e9}t\u{e9}");
    }
}
