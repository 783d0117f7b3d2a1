//! Resource storage against a local directory, memory and a real
//! S3-compatible server (moto on 127.0.0.1:5000, started by
//! `scripts/services`; `ALIAS_S3_TEST_PORT` overrides the port).
//!
//! The checks every backend passes and the local and memory backends are
//! here; `s3.rs` runs them against the S3 server, `spooled.rs` checks
//! spooled uploads on every backend.

use bytes::Bytes;
use futures_util::{stream, Stream, TryStreamExt};
use runtime::storage::{S3Settings, Storage, StorageError, PART_SIZE};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod s3;
mod spooled;

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
