//! CSV files: filtering rows and writing them back as CSV.

use std::collections::HashSet;
use std::io::BufRead;

use protocol::scope::Fields;
use serde_json::{Map, Value as Json};

use super::{bad, Emitter, Matcher, RecError};

/// One CSV line, `\r\n`-terminated.
fn csv_line<'f>(fields: impl Iterator<Item = &'f [u8]>, quote_all: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let needs = quote_all || f.iter().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
        if needs {
            out.push(b'"');
            for &b in f {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(f);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn csv_error(e: csv::Error) -> RecError {
    if e.is_io_error() {
        match e.into_kind() {
            csv::ErrorKind::Io(io) => RecError::Io(io),
            other => bad(format!("{other:?}")),
        }
    } else {
        bad(format!("bad CSV: {e}"))
    }
}

pub(super) fn csv_records<R: BufRead>(
    mut r: R,
    m: &mut Matcher<'_>,
    em: &mut Emitter<'_>,
) -> Result<(), RecError> {
    let head = r.fill_buf()?;
    let bom = head.starts_with(&[0xEF, 0xBB, 0xBF]);
    if bom {
        r.consume(3);
    }
    let quote_all = r.fill_buf()?.first() == Some(&b'"');
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(r);
    let mut row = csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut row).map_err(csv_error)? {
        return Ok(());
    }
    let header: Vec<String> = row
        .iter()
        .map(|f| String::from_utf8(f.to_vec()).map_err(|_| bad("CSV header is not UTF-8")))
        .collect::<Result<_, _>>()?;
    let index = |name: &str| header.iter().position(|h| h == name);
    let needed: Vec<(String, usize)> = m
        .needed
        .iter()
        .filter_map(|n| index(n).map(|i| (n.clone(), i)))
        .collect();
    let out_cols: Vec<usize> = match &m.scope.fields {
        Fields::All => (0..header.len()).collect(),
        Fields::Only(names) => {
            let mut seen = HashSet::new();
            names
                .iter()
                .filter_map(|n| index(n))
                .filter(|i| seen.insert(*i))
                .collect()
        }
    };
    let mut head_line = if bom {
        vec![0xEF, 0xBB, 0xBF]
    } else {
        Vec::new()
    };
    head_line.extend(csv_line(
        out_cols
            .iter()
            .filter_map(|i| header.get(*i).map(|h| h.as_bytes())),
        quote_all,
    ));
    em.context(&head_line)?;
    while rdr.read_byte_record(&mut row).map_err(csv_error)? {
        let mut rec = Map::new();
        for (name, i) in &needed {
            let cell = row.get(*i).unwrap_or_default();
            let text = std::str::from_utf8(cell).map_err(|_| bad("CSV cell is not UTF-8"))?;
            rec.insert(name.clone(), Json::String(text.to_owned()));
        }
        m.seen += 1;
        if !m.matches(&rec) {
            continue;
        }
        m.collect_refs(&rec);
        let line = csv_line(
            out_cols.iter().map(|i| row.get(*i).unwrap_or_default()),
            quote_all,
        );
        em.record(b"", &line)?;
    }
    Ok(())
}
