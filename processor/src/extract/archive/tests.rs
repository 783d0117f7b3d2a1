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
fn a_dry_archive_writes_nothing_but_a_large_entry_log() {
    let dir = tempfile::tempdir().unwrap();
    let files = || std::fs::read_dir(dir.path()).unwrap().count();
    let real = ScopeArchive::new(dir.path(), "real.zip", 6).unwrap();
    assert_eq!(
        files(),
        1,
        "a real archive stages its zip (its logs are small)"
    );
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
    assert_eq!(
        files(),
        0,
        "a dry run writes nothing (its small log stays in memory)"
    );
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

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn read_all(spill: &mut Spill) -> Vec<u8> {
    let mut out = Vec::new();
    spill.reader().unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn a_small_spill_stays_in_memory_and_a_large_one_moves_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut spill = Spill::new(dir.path(), "test");
    spill.write_all(b"first line\n").unwrap();
    spill.write_all(b"second line\n").unwrap();
    assert!(!spill.on_disk());
    assert_eq!(
        files_in(dir.path()),
        0,
        "no temporary file for small spills"
    );
    assert_eq!(read_all(&mut spill), b"first line\nsecond line\n");

    // Past the bound every byte so far moves to the file, in order.
    let big: Vec<u8> = (0..SPILL_MEMORY + 10).map(|i| (i % 251) as u8).collect();
    spill.write_all(&big).unwrap();
    assert!(spill.on_disk());
    assert_eq!(files_in(dir.path()), 1);
    spill.write_all(b"tail").unwrap();
    let mut want = b"first line\nsecond line\n".to_vec();
    want.extend_from_slice(&big);
    want.extend_from_slice(b"tail");
    // Read back twice, from the start each time.
    assert_eq!(read_all(&mut spill), want);
    assert_eq!(read_all(&mut spill), want);
    drop(spill);
    assert_eq!(files_in(dir.path()), 0, "the file goes with the spill");
}
