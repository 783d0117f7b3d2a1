//! The storage checks against a real S3-compatible server (moto), with
//! and without a prefix, and a missing bucket.

use super::*;

pub(super) fn moto_port() -> u16 {
    std::env::var("ALIAS_S3_TEST_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5000)
}

/// A bucket name of this test run alone.
pub(super) fn unique_bucket(tag: &str) -> String {
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
pub(super) async fn create_bucket(port: u16, bucket: &str) {
    let (status, body) = raw_http(port, "PUT", &format!("/{bucket}")).await;
    assert!(
        status.contains(" 200 "),
        "creating bucket {bucket}: {status} {body}"
    );
}

/// Asserts that no multipart upload was left open in the bucket.
pub(super) async fn assert_no_open_uploads(port: u16, bucket: &str) {
    let (status, body) = raw_http(port, "GET", &format!("/{bucket}?uploads")).await;
    assert!(status.contains(" 200 "), "{status} {body}");
    assert!(!body.contains("<Upload>"), "open multipart uploads: {body}");
}

pub(super) fn moto_settings(port: u16) -> S3Settings {
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
