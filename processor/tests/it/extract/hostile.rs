//! Hostile dumps: zip bombs, unsafe names, corrupt archives, unexpected
//! JSON, bad requests and hostile tar entries are refused or stated, never
//! a panic.

use super::*;

async fn hostile(
    env: &Env,
    name: &str,
    bytes: Vec<u8>,
    limits: Limits,
) -> Result<Vec<BuiltArchive>, ExtractError> {
    let dumps = env.store("google", vec![(name.to_owned(), bytes)]).await;
    let options = BuildOptions {
        limits,
        ..BuildOptions::default()
    };
    let r = env
        .try_build(
            &dumps,
            &["google.*", "google.my_activity.search[has title].*"],
            &options,
        )
        .await;
    if r.is_err() {
        // Nothing half-written was stored.
        assert!(env.storage.list("transfers").await.unwrap().is_empty());
    }
    r
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn patch_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[tokio::test]
async fn zip_bombs_are_refused() {
    let env = mem_env();
    // A zip entry that declares 64 MiB from a few hundred bytes.
    let mut bomb = zip_of(&[("Takeout/Mail/x.mbox", &[0u8; 65_536])]);
    let local = bomb.windows(4).position(|w| w == b"PK\x03\x04").unwrap();
    let central = bomb.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    patch_u32(&mut bomb, local + 22, 64 << 20);
    patch_u32(&mut bomb, central + 24, 64 << 20);
    let r = hostile(&env, "bomb.zip", bomb, Limits::default()).await;
    assert!(
        r.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("ratio")),
        "{r:?}"
    );
    // An entry that inflates past the size it declares.
    let body = format!("[{}{{}}]", "{\"title\":\"x\"},".repeat(5000));
    let mut liar = zip_of(&[(
        "Takeout/My Activity/Search/MyActivity.json",
        body.as_bytes(),
    )]);
    let local = liar.windows(4).position(|w| w == b"PK\x03\x04").unwrap();
    let central = liar.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    patch_u32(&mut liar, local + 22, 1000);
    patch_u32(&mut liar, central + 24, 1000);
    let r = hostile(&env, "liar.zip", liar, Limits::default()).await;
    assert!(
        r.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("declared")),
        "{r:?}"
    );
    let many: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| (format!("Takeout/x/{i}"), vec![1u8]))
        .collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let limits = Limits {
        max_entries: 20,
        ..Limits::default()
    };
    let r = hostile(&env, "many.zip", zip_of(&refs), limits).await;
    assert!(
        matches!(r, Err(ExtractError::LimitExceeded { .. })),
        "{r:?}"
    );
    let limits = Limits {
        max_total_uncompressed: 1000,
        ..Limits::default()
    };
    let r = hostile(
        &env,
        "total.zip",
        zip_of(&[("Takeout/Mail/a.mbox", &[7u8; 2000])]),
        limits,
    )
    .await;
    assert!(
        matches!(r, Err(ExtractError::LimitExceeded { .. })),
        "{r:?}"
    );
    // A gzip bomb in a tar.gz: a tar of 64 MiB of zeros, as gzip members.
    let mut h = tar::Header::new_gnu();
    h.set_path("Takeout/Mail/x.mbox").unwrap();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    let mut tgz = gz(h.as_bytes());
    let zeros = gz(&[0u8; 1 << 20]);
    for _ in 0..65 {
        tgz.extend_from_slice(&zeros);
    }
    let r = hostile(&env, "bomb.tgz", tgz, Limits::default()).await;
    assert!(
        r.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("ratio")),
        "{r:?}"
    );
}

#[tokio::test]
async fn unsafe_names_are_refused() {
    let env = mem_env();
    for name in [
        "../evil",
        "Takeout/../../evil",
        "/abs/x",
        "C:\\x",
        "C:/x",
        "Takeout\\x.json",
    ] {
        let r = hostile(
            &env,
            "evil.zip",
            zip_of(&[("Takeout/ok.json", b"[]"), (name, b"x")]),
            Limits::default(),
        )
        .await;
        assert!(
            matches!(r, Err(ExtractError::UnsafeEntry { .. })),
            "{name}: {r:?}"
        );
        assert_eq!(r.unwrap_err().code(), "unsafe_entry");
    }
    // A symlink in a tar.
    for (kind, target) in [
        (tar::EntryType::Symlink, "/etc/passwd"),
        (tar::EntryType::Link, "Takeout/a"),
    ] {
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        t.append_link(&mut h, "Takeout/My Activity/Search/MyActivity.json", target)
            .unwrap();
        let r = hostile(&env, "link.tar", t.into_inner().unwrap(), Limits::default()).await;
        assert!(matches!(r, Err(ExtractError::UnsafeEntry { .. })), "{r:?}");
    }
    // A symlink in a zip.
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.add_symlink(
        "Takeout/Mail/x.mbox",
        "/etc/passwd",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    let r = hostile(
        &env,
        "link.zip",
        w.finish().unwrap().into_inner(),
        Limits::default(),
    )
    .await;
    assert!(matches!(r, Err(ExtractError::UnsafeEntry { .. })), "{r:?}");
}

#[tokio::test]
async fn corrupt_dumps_fail_the_build() {
    let env = mem_env();
    let o = opts(Provider::Google, Format::Zip, 1, Era::Current);
    let (_, zip) = dumpgen::generate(&o).unwrap().remove(0);
    let r = hostile(
        &env,
        "cut.zip",
        zip[..zip.len() / 2].to_vec(),
        Limits::default(),
    )
    .await;
    assert!(matches!(r, Err(ExtractError::CorruptDump { .. })), "{r:?}");
    // Bytes flipped inside deflated data: CRC or inflate error.
    let mut bad = zip.clone();
    let src = ZipArchive::new(Cursor::new(zip.clone())).unwrap();
    let _ = src;
    let mut z = ZipArchive::new(Cursor::new(zip.clone())).unwrap();
    let f = z
        .by_name("Takeout/My Activity/Search/MyActivity.json")
        .unwrap();
    let at = (f.data_start() + f.compressed_size() / 2) as usize;
    drop(f);
    for b in &mut bad[at..at + 64] {
        *b ^= 0x5a;
    }
    let r = hostile(&env, "flipped.zip", bad, Limits::default()).await;
    assert!(matches!(r, Err(ExtractError::CorruptDump { .. })), "{r:?}");
    let o = opts(Provider::Google, Format::TarGz, 1, Era::Current);
    let (_, tgz) = dumpgen::generate(&o).unwrap().remove(0);
    let mut bad = tgz.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 256] {
        *b ^= 0xa5;
    }
    let r = hostile(&env, "bad.tgz", bad, Limits::default()).await;
    assert!(matches!(r, Err(ExtractError::CorruptDump { .. })), "{r:?}");
    let r = hostile(
        &env,
        "cut.tgz",
        tgz[..tgz.len() / 3].to_vec(),
        Limits::default(),
    )
    .await;
    assert!(matches!(r, Err(ExtractError::CorruptDump { .. })), "{r:?}");
    let r = hostile(&env, "noise.bin", vec![7u8; 4096], Limits::default()).await;
    assert!(
        matches!(r, Err(ExtractError::UnsupportedDump { .. })),
        "{r:?}"
    );
}

#[tokio::test]
async fn unexpected_json_is_skipped_and_stated() {
    let env = mem_env();
    let file = "Takeout/My Activity/Search/MyActivity.json";
    for body in [
        &b"{\"not\":\"an array\"}"[..],
        b"[{\"title\":1},",
        b"[1,2,3]",
        b"<html></html>",
    ] {
        let zip = zip_of(&[(file, body), ("Takeout/Mail/a.mbox", b"From x\n")]);
        let built = hostile(&env, "odd.zip", zip, Limits::default())
            .await
            .unwrap();
        // The whole scope takes the file as it is; the filtered one skips it.
        let whole = env.open(&built[0]).await;
        assert!(names(&whole).contains(&file.to_owned()));
        let a = &built[1];
        assert_eq!(a.skipped.len(), 1, "{:?}", a.skipped);
        assert_eq!(a.skipped[0].entry, file);
        assert_eq!(a.skipped[0].catalog_path, "my_activity.search");
        let mut z = env.open(a).await;
        assert_eq!(names(&z), ["manifest.json"]);
        let m = json(&mut z, "manifest.json");
        assert!(
            m["skipped"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("json_array"),
            "{m}"
        );
    }
}

#[tokio::test]
async fn bad_requests_are_typed_errors() {
    let env = mem_env();
    let dumps = env
        .dumps(&opts(Provider::Amazon, Format::Zip, 1, Era::Current))
        .await;
    let r = env
        .try_build(&dumps, &["google.*"], &BuildOptions::default())
        .await;
    assert!(matches!(r, Err(ExtractError::NoDump { .. })), "{r:?}");
    let r = env
        .try_build(&dumps, &["twitter.*"], &BuildOptions::default())
        .await;
    assert!(
        matches!(r, Err(ExtractError::UnknownProvider { .. })),
        "{r:?}"
    );
    let r = env
        .try_build(&dumps, &["amazon.nope"], &BuildOptions::default())
        .await;
    assert!(matches!(r, Err(ExtractError::UnknownPath { .. })), "{r:?}");
    let mut wrong = dumps.clone();
    wrong[0].size += 1;
    let r = env
        .try_build(&wrong, &["amazon.*"], &BuildOptions::default())
        .await;
    assert!(matches!(r, Err(ExtractError::DumpChanged { .. })), "{r:?}");
}

/// A tar.gz of one entry named `name` (written raw, so hostile names
/// survive), of `kind`.
fn tgz_entry(name: &str, kind: tar::EntryType, body: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut t = tar::Builder::new(Vec::new());
    t.append(&h, body).unwrap();
    gz(&t.into_inner().unwrap())
}

#[tokio::test]
async fn hostile_tar_entries_and_wrong_formats_are_refused() {
    let env = mem_env();
    for name in [
        "../evil.json",
        "Takeout/../../evil.json",
        "/etc/passwd",
        "Takeout/./../x",
    ] {
        let r = hostile(
            &env,
            "evil.tgz",
            tgz_entry(name, tar::EntryType::Regular, b"[]"),
            Limits::default(),
        )
        .await;
        assert!(
            matches!(r, Err(ExtractError::UnsafeEntry { .. })),
            "{name}: {r:?}"
        );
    }
    // Devices and pipes are not files of an export.
    for kind in [
        tar::EntryType::Char,
        tar::EntryType::Block,
        tar::EntryType::Fifo,
    ] {
        let r = hostile(
            &env,
            "dev.tgz",
            tgz_entry("Takeout/Mail/x.mbox", kind, b""),
            Limits::default(),
        )
        .await;
        assert!(
            matches!(r, Err(ExtractError::UnsafeEntry { .. })),
            "{kind:?}: {r:?}"
        );
    }
    // The format is read from the bytes, not the name: a tar.gz named
    // .zip and a zip named .tgz are read as what they are.
    let o = opts(Provider::Google, Format::TarGz, 1, Era::Current);
    let (_, tgz) = dumpgen::generate(&o).unwrap().remove(0);
    let zip = zip_of(&[("Takeout/Mail/a.mbox", b"From x\n")]);
    for (name, bytes) in [("takeout.zip", tgz), ("takeout.tgz", zip)] {
        let r = hostile(&env, name, bytes, Limits::default()).await;
        assert!(r.is_ok(), "{name}: {r:?}");
        env.storage.delete_prefix("transfers").await.unwrap();
    }
    // An empty file, a gzip of noise, a gzip of a gzip: refused.
    for (name, bytes) in [
        ("empty.zip", Vec::new()),
        ("noise.tar.gz", gz(&[9u8; 5000])),
        ("twice.tar.gz", gz(&gz(b"not a tar"))),
    ] {
        let r = hostile(&env, name, bytes, Limits::default()).await;
        assert!(
            matches!(
                r,
                Err(ExtractError::CorruptDump { .. } | ExtractError::UnsupportedDump { .. })
            ),
            "{name}: {r:?}"
        );
    }
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    /// Builds from `bytes` named `name`: an archive set or a typed error,
    /// never a panic (which `build_archives` would report as `internal`).
    fn build(name: &str, bytes: Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let env = mem_env();
            let r = hostile(&env, name, bytes, Limits::default()).await;
            if let Err(e) = r {
                assert_ne!(e.code(), "internal", "{e}");
            }
        });
    }

    fn small_zip() -> Vec<u8> {
        zip_of(&[
            (
                "Takeout/My Activity/Search/MyActivity.json",
                br#"[{"title":"Searched for x","time":"2020-01-01T00:00:00Z"}]"#,
            ),
            ("Takeout/Mail/a.mbox", b"From x\nhello\n"),
        ])
    }

    fn small_tgz() -> Vec<u8> {
        let mut t = tar::Builder::new(Vec::new());
        for (name, body) in [
            (
                "Takeout/My Activity/Search/MyActivity.json",
                &br#"[{"title":"Searched for x"}]"#[..],
            ),
            ("Takeout/Mail/a.mbox", b"From x\n"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            t.append_data(&mut h, name, body).unwrap();
        }
        gz(&t.into_inner().unwrap())
    }

    /// `base` with `flips` (position, xor mask) applied, then cut at `cut`.
    fn mutate(mut base: Vec<u8>, flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
        let len = base.len();
        for (at, mask) in flips {
            base[at % len] ^= mask;
        }
        base.truncate(cut.max(1).min(len));
        base
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            build("x.zip", bytes.clone());
            build("x.tar.gz", bytes);
        }

        #[test]
        fn mutated_zips(
            flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..8),
            cut in any::<usize>(),
        ) {
            build("m.zip", mutate(small_zip(), &flips, cut));
        }

        #[test]
        fn mutated_tar_gz(
            flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..8),
            cut in any::<usize>(),
        ) {
            build("m.tgz", mutate(small_tgz(), &flips, cut));
        }
    }
}
