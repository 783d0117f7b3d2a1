//! `reference_mode`: the reference client's behaviour, as observed
//! (PROTOCOL.md Part 1, "What the reference client was seen to do").

use crate::*;
use reqwest::header::CONTENT_TYPE;

#[tokio::test]
async fn chunks_are_appended_and_head_is_unknown() {
    let f = Fixture::start(Faults::reference());
    let id = contract_hash();

    // Before any start: 500.
    assert_eq!(
        f.chunk(&id, "root.tar.gz", "0-4", b"hello").await.status(),
        500
    );
    // A tampered grant: 500 (the reference throws).
    assert_eq!(f.start_transfer(&id, &tampered_token()).await.status(), 500);
    let (status, reason) = refusal(f.start_transfer(&id, &client_decl_token()).await).await;
    assert_eq!((status, reason.as_str()), (400, "not a grant"));
    f.started().await;

    // The same chunk twice: appended twice (the offset is ignored).
    assert_eq!(
        f.chunk(&id, "root.tar.gz", "0-4", b"hello").await.status(),
        200
    );
    assert_eq!(
        f.chunk(&id, "root.tar.gz", "0-4", b"hello").await.status(),
        200
    );
    // Out of order: appended in arrival order.
    assert_eq!(
        f.chunk(&id, "root.tar.gz", "20-24", b"world")
            .await
            .status(),
        200
    );
    assert_eq!(
        f.sink.read_file(&id, "root.tar.gz").unwrap(),
        b"hellohelloworld"
    );
    // No HEAD route.
    assert_eq!(f.head(&id, "root.tar.gz").await.0, 404);
    // Missing Range: 500, nothing written.
    let r = f
        .chunk_with(&id, "root.tar.gz", None, "application/octet-stream", b"zz")
        .await;
    assert_eq!(r.status(), 500);
    // The content type and length checks are the reference's.
    let r = f
        .chunk_with(&id, "root.tar.gz", Some("0-1"), "text/plain", b"zz")
        .await;
    assert_eq!(refusal(r).await, (400, "bad content type".to_owned()));
    let r = f.chunk(&id, "root.tar.gz", "bytes=0-9", b"zz").await;
    assert_eq!(
        refusal(r).await,
        (400, "range size mismatch with body size".to_owned())
    );
    assert_eq!(f.sink.read_file(&id, "root.tar.gz").unwrap().len(), 15);

    // Finishes: 200 whatever they say.
    let r = f
        .post_json(
            f.sink.file_url(&id, "root.tar.gz"),
            serde_json::json!({"action":"finish","size":1,"blake2b":"x"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = f
        .http
        .post(f.sink.transfer_url(&id))
        .header(CONTENT_TYPE, "text/plain;charset=UTF-8")
        .body("[object Object]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A new start wipes everything.
    f.started().await;
    assert!(f.sink.read_file(&id, "root.tar.gz").is_err());
}
