//! Tests of the output zip and its names.
use super::*;
use protocol::scope::Scope;

#[test]
fn names_are_safe_and_unique() {
    let scopes: Vec<Scope> = [
        "google.my_activity.search",
        "google.*",
        "google.photos[photoTakenTime>2020].*",
        "google.photos.{title}",
        "google.photos.{title}",
    ]
    .iter()
    .map(|s| Scope::parse(s).unwrap())
    .collect();
    let names = archive_names(&scopes);
    assert_eq!(names[0], "google.my_activity.search.zip");
    assert_eq!(names[1], "google.all.zip");
    assert!(
        names[2].starts_with("google.photos-")
            && names[2].len() == "google.photos-12345678.zip".len()
    );
    assert_ne!(names[2], names[3]);
    assert_ne!(names[3], names[4]);
    let set: HashSet<_> = names.iter().collect();
    assert_eq!(set.len(), names.len());
    for n in &names {
        assert!(protocol::wire::is_safe_segment(n), "{n}");
    }
}

fn entry(name: &str) -> OutEntry {
    OutEntry {
        name: name.into(),
        catalog_path: "p".into(),
        dump: "d.zip".into(),
        records: None,
        size: 0,
        pending: None,
        source_format: None,
    }
}

#[test]
fn a_dry_archive_writes_only_its_entry_log() {
    let dir = tempfile::tempdir().unwrap();
    let files = || std::fs::read_dir(dir.path()).unwrap().count();
    let real = ScopeArchive::new(dir.path(), "real.zip", 6).unwrap();
    assert!(files() >= 2, "a real archive stages its zip");
    drop(real);
    assert_eq!(files(), 0);
    let mut dry = ScopeArchive::dry(dir.path(), "dry.zip").unwrap();
    dry.copy_whole(&mut &b"hello"[..], entry("b.txt"), false)
        .unwrap();
    dry.start(entry("a.json"), false).unwrap();
    let mut sink = EntrySink {
        archive: &mut dry,
        entry: None,
        large: false,
    };
    sink.record(b"", b"{\"x\":1}").unwrap();
    dry.end(Some(1)).unwrap();
    assert_eq!(files(), 1, "only the entry log");
    let (out, totals) = dry.finish(|_| true, &Map::new()).unwrap();
    assert_eq!(
        totals,
        Totals {
            records: 1,
            files: 2,
            bytes: 12
        }
    );
    let Output::Dry {
        first_files,
        samples,
    } = out
    else {
        panic!("a dry run gave an archive");
    };
    assert_eq!(first_files, ["a.json", "b.txt"]);
    assert_eq!(samples, ["{\"x\":1}"]);
    assert_eq!(files(), 0);
}

#[test]
fn compressed_formats() {
    assert!(is_compressed_format("a/IMG_1.JPG"));
    assert!(is_compressed_format("x.mp3"));
    assert!(!is_compressed_format("x.json"));
    assert!(!is_compressed_format("x.mbox"));
    assert!(!is_compressed_format("noext"));
}
