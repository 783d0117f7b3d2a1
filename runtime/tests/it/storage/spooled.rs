//! [`Storage::put_stream_spooled`] on every backend.

use super::s3::{assert_no_open_uploads, create_bucket, moto_port, moto_settings, unique_bucket};
use super::*;

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
