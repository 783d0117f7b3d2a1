//! Resource storage against a local directory, memory and a real
//! S3-compatible server (moto on 127.0.0.1:5000, started by
//! `scripts/services`; `ALIAS_S3_TEST_PORT` overrides the port).

use bytes::Bytes;
use futures_util::{stream, Stream, TryStreamExt};
use runtime::storage::{S3Settings, Storage, StorageError, PART_SIZE};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deterministic pseudo-random bytes (xorshift), so that a misplaced chunk
/// changes the hash.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Cuts `bytes` into chunks of odd, varying sizes.
fn chunks(bytes: &[u8]) -> Vec<Bytes> {
    const SIZES: [usize; 6] = [1, 4093, 65_537, 0, 1_000_003, 333];
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = SIZES[i % SIZES.len()].min(bytes.len() - at);
        out.push(Bytes::copy_from_slice(&bytes[at..at + n]));
        at += n;
        i += 1;
    }
    out
}

/// A stream of `bytes` in odd chunks, optionally failing after `fail_after`
/// bytes.
fn input(
    bytes: &[u8],
    fail_after: Option<usize>,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + Unpin {
    let mut items: Vec<Result<Bytes, io::Error>> = Vec::new();
    let mut sent = 0;
    for chunk in chunks(bytes) {
        if fail_after.is_some_and(|limit| sent >= limit) {
            items.push(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "client went away",
            )));
            break;
        }
        sent += chunk.len();
        items.push(Ok(chunk));
    }
    stream::iter(items)
}

fn blake2b(bytes: &[u8]) -> [u8; 64] {
    *blake2b_simd::blake2b(bytes).as_array()
}

async fn read_all(storage: &Storage, key: &str) -> Vec<u8> {
    let chunks: Vec<Bytes> = storage
        .get_stream(key)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

/// The checks every backend must pass. `root` is a fresh prefix of its own.
async fn exercise(storage: &Storage, root: &str) {
    // A multipart object: one whole part and a bit.
    let big = data(PART_SIZE + 3_000_017, 7);
    let big_key = format!("{root}/dumps/user/google/takeout.zip");
    let info = storage
        .put_stream(&big_key, input(&big, None), None)
        .await
        .unwrap();
    assert_eq!(info.size, big.len() as u64);
    assert_eq!(info.blake2b, blake2b(&big));
    assert_eq!(info.blake2b_b64().len(), 86);

    let head = storage.head(&big_key).await.unwrap().unwrap();
    assert_eq!(head.key, big_key);
    assert_eq!(head.size, big.len() as u64);
    assert!(read_all(storage, &big_key).await == big, "get_stream");

    // Ranges: inside, across the part boundary, clamped at the end, empty.
    let r = storage.get_range(&big_key, 1000..70_000).await.unwrap();
    assert_eq!(&r[..], &big[1000..70_000]);
    let edge = PART_SIZE as u64;
    let r = storage
        .get_range(&big_key, edge - 10..edge + 10)
        .await
        .unwrap();
    assert_eq!(&r[..], &big[PART_SIZE - 10..PART_SIZE + 10]);
    let len = big.len() as u64;
    let r = storage
        .get_range(&big_key, len - 5..len + 100)
        .await
        .unwrap();
    assert_eq!(&r[..], &big[big.len() - 5..]);
    assert!(storage
        .get_range(&big_key, 10..10)
        .await
        .unwrap()
        .is_empty());
    assert!(storage
        .get_range(&big_key, len..len + 1)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        storage.get_range(&big_key, len + 1..len + 10).await,
        Err(StorageError::InvalidRange { size, .. }) if size == len
    ));
    assert!(matches!(
        storage.get_range(&big_key, std::ops::Range { start: 20, end: 10 }).await,
        Err(StorageError::InvalidRange { size, .. }) if size == len
    ));

    // The AsyncRead adapter.
    let mut reader = storage.reader(&big_key).await.unwrap();
    let mut back = Vec::new();
    reader.read_to_end(&mut back).await.unwrap();
    assert!(back == big, "reader");

    // Small objects: one request, both ways of writing; an empty object.
    let small = data(100_000, 8);
    let small_key = format!("{root}/dumps/user/facebook/export.zip");
    let info = storage
        .put_stream(&small_key, input(&small, None), Some(100_000))
        .await
        .unwrap();
    assert_eq!((info.size, info.blake2b), (100_000, blake2b(&small)));
    assert_eq!(storage.get_bytes(&small_key).await.unwrap(), small);
    let manifest_key = format!("{root}/transfers/t1/1/manifest.json");
    let manifest = Bytes::from_static(br#"{"files":[]}"#);
    let info = storage
        .put_bytes(&manifest_key, manifest.clone())
        .await
        .unwrap();
    assert_eq!(info.blake2b, blake2b(&manifest));
    assert_eq!(storage.get_bytes(&manifest_key).await.unwrap(), manifest);
    let empty_key = format!("{root}/transfers/t1/1/empty");
    let info = storage
        .put_stream(&empty_key, input(&[], None), Some(0))
        .await
        .unwrap();
    assert_eq!((info.size, info.blake2b), (0, blake2b(&[])));
    assert!(storage.get_bytes(&empty_key).await.unwrap().is_empty());
    assert!(read_all(storage, &empty_key).await.is_empty());

    // Listing: recursive, sorted, whole segments only.
    let sibling_key = format!("{root}/transfers/t10/1/a");
    storage
        .put_bytes(&sibling_key, Bytes::from_static(b"x"))
        .await
        .unwrap();
    let keys = |list: Vec<runtime::storage::ObjectInfo>| {
        list.into_iter().map(|o| o.key).collect::<Vec<_>>()
    };
    assert_eq!(
        keys(storage.list(root).await.unwrap()),
        vec![
            small_key.clone(),
            big_key.clone(),
            sibling_key.clone(),
            empty_key.clone(),
            manifest_key.clone(),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(
        keys(
            storage
                .list(&format!("{root}/transfers/t1/"))
                .await
                .unwrap()
        ),
        vec![empty_key.clone(), manifest_key.clone()]
    );
    assert!(storage
        .list(&format!("{root}/nothing"))
        .await
        .unwrap()
        .is_empty());

    // A stream that fails, before and after the multipart upload began:
    // nothing appears, and an object already there stays as it was.
    for fail_after in [50_000, PART_SIZE + 1_000_000] {
        let fresh = format!("{root}/failed/{fail_after}");
        let err = storage
            .put_stream(&fresh, input(&big, Some(fail_after)), None)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err}");
        assert!(storage.head(&fresh).await.unwrap().is_none());

        let err = storage
            .put_stream(&small_key, input(&big, Some(fail_after)), None)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err}");
        assert_eq!(storage.get_bytes(&small_key).await.unwrap(), small);
    }
    assert!(storage
        .list(&format!("{root}/failed"))
        .await
        .unwrap()
        .is_empty());

    // The size limit: exceeded before and after the multipart upload began.
    for limit in [99_999, PART_SIZE as u64 + 2_000_000] {
        let fresh = format!("{root}/toolarge/{limit}");
        let err = storage
            .put_stream(&fresh, input(&big, None), Some(limit))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::TooLarge { limit: l } if l == limit),
            "{err}"
        );
        assert!(storage.head(&fresh).await.unwrap().is_none());
        let err = storage
            .put_stream(&small_key, input(&big, None), Some(limit))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::TooLarge { .. }), "{err}");
        assert_eq!(storage.get_bytes(&small_key).await.unwrap(), small);
    }

    // Overwriting replaces the object.
    storage
        .put_bytes(&small_key, Bytes::from_static(b"new"))
        .await
        .unwrap();
    assert_eq!(&storage.get_bytes(&small_key).await.unwrap()[..], b"new");

    // Missing objects.
    let missing = format!("{root}/missing");
    assert!(storage.head(&missing).await.unwrap().is_none());
    assert!(matches!(
        storage.get_stream(&missing).await.map(|_| ()),
        Err(StorageError::NotFound(k)) if k == missing
    ));
    assert!(matches!(
        storage.get_bytes(&missing).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        storage.get_range(&missing, 0..10).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        storage.get_range(&missing, 0..0).await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        storage.reader(&missing).await.map(|_| ()),
        Err(StorageError::NotFound(_))
    ));

    // Hostile keys never reach the backend.
    for bad in [
        "../x".to_owned(),
        "/abs".to_owned(),
        "a//b".to_owned(),
        "a/./b".to_owned(),
        String::new(),
        "dumps/usér/x".to_owned(),
        format!("a/{}", "x".repeat(300)),
        format!("{root}/"),
    ] {
        let invalid = |r: Result<(), StorageError>| {
            assert!(
                matches!(r, Err(StorageError::InvalidKey { .. })),
                "{bad:?}: {r:?}"
            );
        };
        invalid(
            storage
                .put_stream(&bad, input(b"x", None), None)
                .await
                .map(|_| ()),
        );
        invalid(storage.put_bytes(&bad, Bytes::new()).await.map(|_| ()));
        invalid(storage.get_stream(&bad).await.map(|_| ()));
        invalid(storage.get_range(&bad, 0..1).await.map(|_| ()));
        invalid(storage.get_bytes(&bad).await.map(|_| ()));
        invalid(storage.head(&bad).await.map(|_| ()));
        invalid(storage.delete(&bad).await);
        invalid(storage.reader(&bad).await.map(|_| ()));
    }
    assert!(matches!(
        storage.list("../x").await,
        Err(StorageError::InvalidKey { .. })
    ));
    assert!(matches!(
        storage.delete_prefix("").await,
        Err(StorageError::InvalidKey { .. })
    ));

    // Deleting: a missing object is fine; a prefix takes whole segments.
    storage.delete(&big_key).await.unwrap();
    storage.delete(&big_key).await.unwrap();
    assert!(storage.head(&big_key).await.unwrap().is_none());
    assert_eq!(
        storage
            .delete_prefix(&format!("{root}/transfers/t1"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        keys(storage.list(root).await.unwrap()),
        vec![small_key.clone(), sibling_key.clone()]
    );
    assert_eq!(storage.delete_prefix(root).await.unwrap(), 2);
    assert!(storage.list(root).await.unwrap().is_empty());
}

#[tokio::test]
async fn local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root_dir = dir.path().join("not/yet/there");
    let url = url::Url::from_directory_path(&root_dir).unwrap();
    let storage = Storage::from_url(url.as_str(), &S3Settings::default()).unwrap();
    assert!(root_dir.is_dir(), "the directory is created");
    exercise(&storage, "local").await;

    // Nothing is left behind: no staging files, no empty directories.
    let left: Vec<_> = std::fs::read_dir(&root_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // A clone shares the backend; another URL for the same directory sees
    // the same objects.
    let clone = storage.clone();
    clone
        .put_bytes("a/b", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let again = Storage::from_url(url.as_str(), &S3Settings::default()).unwrap();
    assert_eq!(&again.get_bytes("a/b").await.unwrap()[..], b"hello");
    assert_eq!(std::fs::read(root_dir.join("a/b")).unwrap(), b"hello");
}

#[tokio::test]
async fn local_directory_stray_files_stay_invisible() {
    // A crash mid-upload leaves object_store's staging file `{key}#{n}`;
    // it is neither listed nor read as an object.
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    let storage = Storage::from_url(url.as_str(), &S3Settings::default()).unwrap();
    std::fs::create_dir_all(dir.path().join("dumps")).unwrap();
    std::fs::write(dir.path().join("dumps/x#1"), b"partial").unwrap();
    assert!(storage.list("dumps").await.unwrap().is_empty());
    assert!(storage.head("dumps/x").await.unwrap().is_none());
}

#[tokio::test]
async fn memory() {
    let storage = Storage::from_url("memory://", &S3Settings::default()).unwrap();
    exercise(&storage, "mem").await;
    let clone = storage.clone();
    clone
        .put_bytes("k", Bytes::from_static(b"v"))
        .await
        .unwrap();
    assert_eq!(&storage.get_bytes("k").await.unwrap()[..], b"v");
}

#[tokio::test]
async fn unsupported_urls_are_named() {
    let err = Storage::from_url("gs://bucket", &S3Settings::default()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StorageError::UnsupportedUrl { .. }));
    assert!(text.contains("file://") && text.contains("s3://") && text.contains("memory://"));
}

fn moto_port() -> u16 {
    std::env::var("ALIAS_S3_TEST_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5000)
}

/// A bucket name of this test run alone.
fn unique_bucket(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "alias-{tag}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends one raw, unsigned request to the S3 server (moto accepts them) and
/// returns the status line and body.
async fn raw_http(port: u16, method: &str, target: &str) -> (String, String) {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("no S3 server on 127.0.0.1:{port} ({e}); run scripts/services"));
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Creates a bucket (object_store cannot).
async fn create_bucket(port: u16, bucket: &str) {
    let (status, body) = raw_http(port, "PUT", &format!("/{bucket}")).await;
    assert!(
        status.contains(" 200 "),
        "creating bucket {bucket}: {status} {body}"
    );
}

/// Asserts that no multipart upload was left open in the bucket.
async fn assert_no_open_uploads(port: u16, bucket: &str) {
    let (status, body) = raw_http(port, "GET", &format!("/{bucket}?uploads")).await;
    assert!(status.contains(" 200 "), "{status} {body}");
    assert!(!body.contains("<Upload>"), "open multipart uploads: {body}");
}

fn moto_settings(port: u16) -> S3Settings {
    S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        allow_http: true,
        virtual_hosted_style: false,
    }
}

#[tokio::test]
async fn s3_with_prefix() {
    let port = moto_port();
    let bucket = unique_bucket("prefix");
    create_bucket(port, &bucket).await;
    let settings = moto_settings(port);
    let storage = Storage::from_url(&format!("s3://{bucket}/alias/bank"), &settings).unwrap();
    assert!(storage
        .location()
        .starts_with(&format!("s3://{bucket}/alias/bank")));
    exercise(&storage, "s3").await;
    assert_no_open_uploads(port, &bucket).await;

    // The prefix is real: the bucket itself shows the object under it.
    storage
        .put_bytes("a/b", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let whole = Storage::from_url(&format!("s3://{bucket}"), &settings).unwrap();
    let keys: Vec<String> = whole
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec!["alias/bank/a/b".to_owned()]);
    assert_eq!(
        &whole.get_bytes("alias/bank/a/b").await.unwrap()[..],
        b"hello"
    );
}

#[tokio::test]
async fn s3_whole_bucket() {
    let port = moto_port();
    let bucket = unique_bucket("bucket");
    create_bucket(port, &bucket).await;
    let storage = Storage::from_url(&format!("s3://{bucket}"), &moto_settings(port)).unwrap();
    exercise(&storage, "root").await;
    assert_no_open_uploads(port, &bucket).await;
    assert!(storage.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn s3_missing_bucket_is_a_backend_error() {
    let port = moto_port();
    let bucket = unique_bucket("absent");
    let storage = Storage::from_url(&format!("s3://{bucket}"), &moto_settings(port)).unwrap();
    let err = storage
        .put_bytes("a", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Upload(_)), "{err}");
}

/// The checks of [`Storage::put_stream_spooled`] every backend must pass:
/// objects of zero, one part, exactly one part and several parts come back
/// byte for byte; a failing or oversized stream, before or after the
/// multipart upload began, stores nothing and leaves an object already
/// there as it was; the spool directory is left empty.
async fn exercise_spooled(storage: &Storage, root: &str) {
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().join("spool");
    let big = data(2 * PART_SIZE + 1_234_567, 11);
    for len in [
        0,
        1,
        100_000,
        PART_SIZE - 1,
        PART_SIZE,
        PART_SIZE + 1,
        big.len(),
    ] {
        let key = format!("{root}/spooled/{len}");
        let bytes = &big[..len];
        let info = storage
            .put_stream_spooled(&key, input(bytes, None), None, &spool_dir)
            .await
            .unwrap();
        assert_eq!(
            (info.size, info.blake2b),
            (len as u64, blake2b(bytes)),
            "{len}"
        );
        assert!(read_all(storage, &key).await == bytes, "{len} read back");
    }
    let kept = format!("{root}/spooled/100000");
    for fail_after in [50_000, PART_SIZE + 1_000_000, 2 * PART_SIZE + 10] {
        let fresh = format!("{root}/spooled-failed/{fail_after}");
        let err = storage
            .put_stream_spooled(&fresh, input(&big, Some(fail_after)), None, &spool_dir)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err}");
        assert!(storage.head(&fresh).await.unwrap().is_none());
        let err = storage
            .put_stream_spooled(&kept, input(&big, Some(fail_after)), None, &spool_dir)
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Io(_)), "{err}");
        assert!(read_all(storage, &kept).await == big[..100_000], "kept");
    }
    for limit in [99_999, PART_SIZE as u64 + 2_000_000] {
        let fresh = format!("{root}/spooled-toolarge/{limit}");
        let err = storage
            .put_stream_spooled(&fresh, input(&big, None), Some(limit), &spool_dir)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::TooLarge { limit: l } if l == limit),
            "{err}"
        );
        assert!(storage.head(&fresh).await.unwrap().is_none());
    }
    assert!(storage
        .list(&format!("{root}/spooled-failed"))
        .await
        .unwrap()
        .is_empty());
    let left: Vec<_> = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "spool files left behind: {left:?}");
    assert_eq!(
        storage
            .delete_prefix(&format!("{root}/spooled"))
            .await
            .unwrap(),
        7
    );
}

#[tokio::test]
async fn spooled_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path()).unwrap();
    let storage = Storage::from_url(url.as_str(), &S3Settings::default()).unwrap();
    exercise_spooled(&storage, "local").await;
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn spooled_memory() {
    let storage = Storage::from_url("memory://", &S3Settings::default()).unwrap();
    exercise_spooled(&storage, "mem").await;
}

#[tokio::test]
async fn spooled_s3() {
    let port = moto_port();
    let bucket = unique_bucket("spooled");
    create_bucket(port, &bucket).await;
    let storage = Storage::from_url(&format!("s3://{bucket}"), &moto_settings(port)).unwrap();
    exercise_spooled(&storage, "root").await;
    assert_no_open_uploads(port, &bucket).await;
    assert!(storage.list("").await.unwrap().is_empty());
}
