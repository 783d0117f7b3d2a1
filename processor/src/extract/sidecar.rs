//! Finding a media file's sidecar (Google Photos naming, EXPORTS.md §1.8).

use std::collections::HashMap;

use super::archive::name_digest;

const SUPPLEMENTAL: &str = "supplemental-metadata";

/// Sidecar candidates by folder.
#[derive(Debug, Default)]
pub(crate) struct SidecarIndex {
    by_folder: HashMap<String, Vec<Candidate>>,
}

#[derive(Debug)]
struct Candidate {
    /// The media name it describes, possibly cut.
    base: Box<str>,
    /// Duplicate index `(n)`.
    dup: Option<u32>,
    /// The digest of the sidecar's entry name (a library of a million
    /// photos keeps no second copy of their names).
    name: u64,
}

fn split_dir(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// `stem(n)` → (`stem`, n).
fn strip_dup(s: &str) -> (&str, Option<u32>) {
    if let Some(body) = s.strip_suffix(')') {
        if let Some((head, digits)) = body.rsplit_once('(') {
            if !digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| b.is_ascii_digit())
            {
                return (head, digits.parse().ok());
            }
        }
    }
    (s, None)
}

/// What a sidecar file name says: the media name (maybe cut) and index.
fn parse_sidecar(file: &str) -> Option<(String, Option<u32>)> {
    let s = file.strip_suffix(".json")?;
    let (s, dup) = strip_dup(s);
    let s = match s.rsplit_once('.') {
        Some((head, tail)) if SUPPLEMENTAL.starts_with(tail) => head,
        _ => s,
    };
    (!s.is_empty()).then(|| (s.to_owned(), dup))
}

impl SidecarIndex {
    /// Notes a candidate sidecar (a JSON entry of the media's path).
    pub(crate) fn add(&mut self, entry: &str) {
        let (dir, file) = split_dir(entry);
        if let Some((base, dup)) = parse_sidecar(file) {
            self.by_folder
                .entry(dir.to_owned())
                .or_default()
                .push(Candidate {
                    base: base.into(),
                    dup,
                    name: name_digest(entry),
                });
        }
    }

    fn lookup(&self, dir: &str, canonical: &str, dup: Option<u32>) -> Option<u64> {
        let list = self.by_folder.get(dir)?;
        if let Some(c) = list.iter().find(|c| c.dup == dup && &*c.base == canonical) {
            return Some(c.name);
        }
        // Names cut to 51 characters: the longest base that starts the name.
        list.iter()
            .filter(|c| {
                c.dup == dup
                    && c.base.chars().count() >= 8
                    && c.base.len() < canonical.len()
                    && canonical.starts_with(&*c.base)
            })
            .max_by_key(|c| c.base.len())
            .map(|c| c.name)
    }

    /// The digest of the name of a media entry's sidecar, if there is one.
    pub(crate) fn find(&self, media: &str, edited_suffixes: &[String]) -> Option<u64> {
        let (dir, file) = split_dir(media);
        let (stem, ext) = match file.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
            _ => (file, String::new()),
        };
        let (stem, dup) = strip_dup(stem);
        if let Some(found) = self.lookup(dir, &format!("{stem}{ext}"), dup) {
            return Some(found);
        }
        let lower = stem.to_lowercase();
        for suffix in edited_suffixes {
            if lower.ends_with(&suffix.to_lowercase()) {
                let original = stem.get(..stem.len().saturating_sub(suffix.len()))?;
                if let Some(found) = self.lookup(dir, &format!("{original}{ext}"), dup) {
                    return Some(found);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sidecars() {
        let mut ix = SidecarIndex::default();
        for s in [
            "P/2020/IMG_1.jpg.json",
            "P/2020/IMG_1.jpg(1).json",
            "P/2021/image.png.supplemental-metadata.json",
            "P/2021/image.png.supplemental-metadata(1).json",
            "P/2021/PXL_20230630_000007123.NIGHT.PORTRAIT.jpg.supp.json",
            "P/2021/PXL_20230630_000015123.LONG_EXPOSURE-01.COVER..json",
            "P/2021/VID_2.mp4.s.json",
            "P/2021/metadata.json",
        ] {
            ix.add(s);
        }
        let e = ["-edited".to_owned()];
        assert_eq!(
            ix.find("P/2020/IMG_1.jpg", &e),
            Some(name_digest("P/2020/IMG_1.jpg.json"))
        );
        assert_eq!(
            ix.find("P/2020/IMG_1(1).jpg", &e),
            Some(name_digest("P/2020/IMG_1.jpg(1).json"))
        );
        assert_eq!(
            ix.find("P/2020/IMG_1-edited.jpg", &e),
            Some(name_digest("P/2020/IMG_1.jpg.json"))
        );
        assert_eq!(
            ix.find("P/2021/image.png", &e),
            Some(name_digest("P/2021/image.png.supplemental-metadata.json"))
        );
        assert_eq!(
            ix.find("P/2021/image(1).png", &e),
            Some(name_digest(
                "P/2021/image.png.supplemental-metadata(1).json"
            ))
        );
        assert_eq!(
            ix.find("P/2021/PXL_20230630_000007123.NIGHT.PORTRAIT.jpg", &e),
            Some(name_digest(
                "P/2021/PXL_20230630_000007123.NIGHT.PORTRAIT.jpg.supp.json"
            ))
        );
        assert_eq!(
            ix.find(
                "P/2021/PXL_20230630_000015123.LONG_EXPOSURE-01.COVER.jpg",
                &e
            ),
            Some(name_digest(
                "P/2021/PXL_20230630_000015123.LONG_EXPOSURE-01.COVER..json"
            ))
        );
        assert_eq!(
            ix.find("P/2021/VID_2.mp4", &e),
            Some(name_digest("P/2021/VID_2.mp4.s.json"))
        );
        assert_eq!(ix.find("P/2020/IMG_9.jpg", &e), None);
        assert_eq!(ix.find("P/2021/IMG_1.jpg", &e), None);
    }
}
