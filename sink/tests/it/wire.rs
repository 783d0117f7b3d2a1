//! The protocol as alias-bank sends it, and every refusal
//! (PROTOCOL.md Part 1 and Part 2 §B item 13).

use crate::*;
use protocol::alias::PushId;
use reqwest::header::CONTENT_TYPE;

#[tokio::test]
async fn a_whole_transfer_is_received_and_checked() {
    let f = Fixture::start(Faults::none());
    let id = f.started().await;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for (start, end) in [(0usize, 4095usize), (4096, 8191), (8192, 9999)] {
        let r = f
            .http
            .put(f.sink.file_url(&id, "google.my_activity.search.zip"))
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("Range", format!("{start}-{end}"))
            .header("Content-Range", format!("bytes {start}-{end}/10000"))
            .body(data[start..=end].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["upload-offset"].to_str().unwrap(),
            (end + 1).to_string()
        );
    }
    assert_eq!(
        f.head(&id, "google.my_activity.search.zip").await,
        (200, Some(10_000))
    );
    let r = f
        .finish_file(&id, "google.my_activity.search.zip", &data)
        .await;
    assert_eq!(r.status(), 200);
    let r = f
        .post_json(
            f.sink.transfer_url(&id),
            serde_json::json!({"finished": true, "files": [
                {"name": "google.my_activity.search.zip", "size": 10_000, "blake2b": b2b(&data)}
            ]}),
        )
        .await;
    assert_eq!(r.status(), 200);

    assert_eq!(
        f.sink
            .read_file(&id, "google.my_activity.search.zip")
            .unwrap(),
        data
    );
    let t = f.sink.transfer(&id).unwrap();
    assert!(t.finished && t.finish_verified && !t.revoked);
    assert_eq!(t.starts, 1);
    assert_eq!(t.grant.client_name.as_deref(), Some("Demo"));
    assert_eq!(t.grant.client_domain.as_deref(), Some("client.example"));
    assert_eq!(t.grant.user, "gTl3Dqh9F19Wo1Rmw0x-zMuNipG07jeiXfYPW4_Js5Q");
    assert_eq!(t.grant.scopes, 2);
    let file = &t.files["google.my_activity.search.zip"];
    assert!(file.complete);
    assert_eq!(
        (file.size, file.chunks, file.total),
        (10_000, 3, Some(10_000))
    );
    assert_eq!(file.blake2b.as_deref(), Some(b2b(&data).as_str()));

    let c = f.sink.counters();
    assert_eq!(
        (
            c.starts,
            c.chunks,
            c.chunk_bytes,
            c.heads,
            c.file_finishes,
            c.transfer_finishes
        ),
        (1, 3, 10_000, 1, 1, 1)
    );
    let log = f.sink.requests();
    assert_eq!(log.len(), 7);
    assert_eq!(log[1].range.as_deref(), Some("0-4095"));
    assert_eq!(log[1].content_range.as_deref(), Some("bytes 0-4095/10000"));

    // The status page, both forms.
    let json: serde_json::Value = f
        .http
        .get(f.url("/?format=json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["transfers"][0]["id"], id.as_str());
    assert_eq!(json["transfers"][0]["finished"], true);
    assert_eq!(json["counters"]["chunks"], 3);
    let html = f
        .http
        .get(f.url("/sink/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("google.my_activity.search.zip") && html.contains("Demo"));
}

#[tokio::test]
async fn start_refusals() {
    let f = Fixture::start(Faults::none());
    let id = contract_hash();

    let (status, reason) = refusal(f.start_transfer(&id, &client_decl_token()).await).await;
    assert_eq!((status, reason.as_str()), (400, "not a grant"));

    let (status, reason) = refusal(f.start_transfer(&grant_hash(), &grant_token()).await).await;
    assert_eq!((status, reason.as_str()), (400, "bad grant hash"));

    let (status, reason) = refusal(f.start_transfer(&id, &tampered_token()).await).await;
    assert_eq!(status, 400);
    assert!(
        reason.contains("bad signature or forged document"),
        "{reason}"
    );

    let r = f
        .http
        .put(f.sink.transfer_url(&id))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("other=1")
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(r).await, (400, "missing grant".to_owned()));
    assert!(f.sink.transfers().is_empty(), "nothing created");

    // The JSON form of the start body is accepted too, with or without a
    // trailing slash.
    let r = f
        .http
        .put(format!("{}/", f.sink.transfer_url(&id)))
        .json(&serde_json::json!({"grant": grant_token()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(f.sink.counters().starts, 5);
}

#[tokio::test]
async fn grant_hash_ids_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::config(dir.path());
    config.push_id = PushId::Grant;
    let f = Fixture::with_config(config, dir);
    let (status, reason) = refusal(f.start_transfer(&contract_hash(), &grant_token()).await).await;
    assert_eq!((status, reason.as_str()), (400, "bad grant hash"));
    // A revocation has its own hash: not accepted where nothing is held...
    let (status, _) = refusal(f.start_transfer(&grant_hash(), &revoked_token()).await).await;
    assert_eq!(status, 400);
    let r = f.start_transfer(&grant_hash(), &grant_token()).await;
    assert_eq!(r.status(), 200);
    // ...but at the id of the same user's grant of the same contract, where
    // its data went.
    let r = f.start_transfer(&grant_hash(), &revoked_token()).await;
    assert_eq!(r.status(), 200);
    assert!(f.sink.transfer(&grant_hash()).unwrap().revoked);
}

#[tokio::test]
async fn chunk_refusals() {
    let f = Fixture::start(Faults::none());
    let id = contract_hash();
    let file = "a.zip";

    // Before any start.
    let (status, _) = refusal(f.chunk(&id, file, "0-4", b"hello").await).await;
    assert_eq!(status, 409);
    f.started().await;

    let r = f
        .chunk_with(
            &id,
            file,
            Some("0-4"),
            "application/octet-stream; charset=binary",
            b"hello",
        )
        .await;
    assert_eq!(refusal(r).await, (400, "bad content type".to_owned()));
    let r = f
        .chunk_with(&id, file, Some("0-4"), "text/plain", b"hello")
        .await;
    assert_eq!(refusal(r).await, (400, "bad content type".to_owned()));

    let r = f.chunk(&id, file, "0-9", b"hello").await;
    assert_eq!(
        refusal(r).await,
        (400, "range size mismatch with body size".to_owned())
    );
    let r = f.chunk(&id, file, "0-2", b"hello").await;
    assert_eq!(
        refusal(r).await,
        (400, "range size mismatch with body size".to_owned())
    );

    let r = f
        .chunk_with(&id, file, None, "application/octet-stream", b"hello")
        .await;
    assert_eq!(refusal(r).await.0, 400);
    for bad in ["4-0", "0-", "bytes 0-4", "x"] {
        let (status, _) = refusal(f.chunk(&id, file, bad, b"hello").await).await;
        assert_eq!(status, 400, "{bad}");
    }

    let r = f
        .http
        .put(f.sink.file_url(&id, file))
        .header(CONTENT_TYPE, "application/octet-stream")
        .header("Range", "0-4")
        .header("Content-Range", "bytes 1-5/10")
        .body(&b"hello"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(r).await.0, 400);

    // Too large for the 64 MiB limit: refused before the body is read.
    let (status, _) = refusal(f.chunk(&id, file, "0-67108864", b"x").await).await;
    assert_eq!(status, 413);

    // File names: one segment of [A-Za-z0-9._-] only.
    for bad in [
        "..",
        "a%20b",
        "%2e%2e",
        "..%2F..%2Fescape",
        "caf%C3%A9",
        "a%00b",
    ] {
        let url = format!("{}{id}/{bad}", f.sink.base_url());
        let r = f
            .http
            .put(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("Range", "0-4")
            .body(&b"hello"[..])
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == 400 || r.status() == 404,
            "{bad}: {}",
            r.status()
        );
    }
    let id_bad = format!("{}..%2Fx/a.zip", f.sink.base_url());
    let r = f
        .http
        .put(id_bad)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header("Range", "0-4")
        .body(&b"hello"[..])
        .send()
        .await
        .unwrap();
    assert!(r.status() == 400 || r.status() == 404);
    // Nothing escaped the data directory: only the transfer's own dir.
    let entries: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "spool~")
        .collect();
    assert_eq!(entries, vec![id.clone()]);
    assert!(f.sink.transfer(&id).unwrap().files.is_empty());
}

#[tokio::test]
async fn chunks_are_written_at_their_offset() {
    let f = Fixture::start(Faults::none());
    let id = f.started().await;
    let file = "x.zip";
    let data = b"0123456789abcdef";

    assert_eq!(f.head(&id, file).await, (200, Some(0)));
    assert_eq!(f.chunk(&id, file, "0-4", &data[0..5]).await.status(), 200);
    // The same chunk again: identical bytes rewritten, nothing appended.
    assert_eq!(f.chunk(&id, file, "0-4", &data[0..5]).await.status(), 200);
    assert_eq!(f.head(&id, file).await, (200, Some(5)));
    // A gap is refused and says what is held.
    let r = f.chunk(&id, file, "8-9", &data[8..10]).await;
    assert_eq!(r.headers()["upload-offset"], "5");
    assert_eq!(refusal(r).await.0, 409);
    // An overlapping chunk with the same bytes extends the file.
    assert_eq!(f.chunk(&id, file, "3-9", &data[3..10]).await.status(), 200);
    // An overlap with different bytes is refused.
    let r = f.chunk(&id, file, "8-11", b"XXab").await;
    assert_eq!(refusal(r).await.0, 409);
    // bytes= is accepted as the reference does.
    assert_eq!(
        f.chunk(&id, file, "bytes=10-15", &data[10..16])
            .await
            .status(),
        200
    );
    assert_eq!(f.head(&id, file).await, (200, Some(16)));
    assert_eq!(f.sink.read_file(&id, file).unwrap(), data);

    // HEAD for an unknown transfer: 404.
    assert_eq!(f.head(&grant_hash(), file).await.0, 404);
}

#[tokio::test]
async fn file_finish_checks_size_and_hash() {
    let f = Fixture::start(Faults::none());
    let id = f.started().await;
    let data = b"some archive bytes";
    f.chunk(&id, "a.zip", "0-17", data).await;

    let r = f
        .post_json(
            f.sink.file_url(&id, "a.zip"),
            serde_json::json!({"action":"finish","size":19,"blake2b":b2b(data)}),
        )
        .await;
    let (status, reason) = refusal(r).await;
    assert_eq!(status, 400);
    assert!(reason.starts_with("size mismatch"), "{reason}");

    let r = f
        .post_json(
            f.sink.file_url(&id, "a.zip"),
            serde_json::json!({"action":"finish","size":18,"blake2b":b2b(b"other")}),
        )
        .await;
    let (status, reason) = refusal(r).await;
    assert_eq!(status, 400);
    assert!(reason.starts_with("blake2b mismatch"), "{reason}");

    let r = f
        .post_json(
            f.sink.file_url(&id, "a.zip"),
            serde_json::json!({"action":"close"}),
        )
        .await;
    assert_eq!(refusal(r).await.0, 400);
    assert!(!f.sink.transfer(&id).unwrap().files["a.zip"].complete);

    // The reference's body, without size or hash, is tolerated.
    let r = f
        .post_json(
            f.sink.file_url(&id, "a.zip"),
            serde_json::json!({"action":"finish"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(f.sink.transfer(&id).unwrap().files["a.zip"].complete);
    // A finished file takes no more chunks.
    let r = f.chunk(&id, "a.zip", "18-18", b"!").await;
    assert_eq!(refusal(r).await.0, 409);

    // An empty file: no chunk, only its finish.
    assert_eq!(f.finish_file(&id, "empty.zip", b"").await.status(), 200);
    assert_eq!(f.sink.read_file(&id, "empty.zip").unwrap(), b"");
}

#[tokio::test]
async fn transfer_finish_checks_every_file() {
    let f = Fixture::start(Faults::none());
    let id = f.started().await;
    f.chunk(&id, "a.zip", "0-2", b"abc").await;
    f.chunk(&id, "b.zip", "0-2", b"def").await;
    f.finish_file(&id, "a.zip", b"abc").await;
    let entry = |name: &str, body: &[u8]| serde_json::json!({"name": name, "size": body.len(), "blake2b": b2b(body)});
    let finish =
        |files: Vec<serde_json::Value>| serde_json::json!({"finished": true, "files": files});

    // b.zip is not finished.
    let r = f
        .post_json(
            f.sink.transfer_url(&id),
            finish(vec![entry("a.zip", b"abc"), entry("b.zip", b"def")]),
        )
        .await;
    assert_eq!(refusal(r).await.0, 400);
    f.finish_file(&id, "b.zip", b"def").await;
    // b.zip is received but not listed.
    let r = f
        .post_json(
            f.sink.transfer_url(&id),
            finish(vec![entry("a.zip", b"abc")]),
        )
        .await;
    assert_eq!(refusal(r).await.0, 400);
    // A wrong hash.
    let r = f
        .post_json(
            f.sink.transfer_url(&id),
            finish(vec![entry("a.zip", b"abc"), entry("b.zip", b"xyz")]),
        )
        .await;
    assert_eq!(refusal(r).await.0, 400);
    let r = f
        .post_json(
            f.sink.transfer_url(&id),
            serde_json::json!({"finished": false}),
        )
        .await;
    assert_eq!(refusal(r).await.0, 400);
    assert!(!f.sink.transfer(&id).unwrap().finished);

    let r = f
        .post_json(
            f.sink.transfer_url(&id),
            finish(vec![entry("a.zip", b"abc"), entry("b.zip", b"def")]),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(f.sink.transfer(&id).unwrap().finish_verified);

    // The reference's `[object Object]` body: answered, but a finished
    // transfer's verdict never changes.
    let object = || {
        f.http
            .post(f.sink.transfer_url(&id))
            .header(CONTENT_TYPE, "text/plain;charset=UTF-8")
            .body("[object Object]")
            .send()
    };
    assert_eq!(object().await.unwrap().status(), 200);
    let t = f.sink.transfer(&id).unwrap();
    assert!(t.finished && t.finish_verified);

    // After a new start it finishes the transfer, unverified.
    f.started().await;
    assert_eq!(object().await.unwrap().status(), 200);
    let t = f.sink.transfer(&id).unwrap();
    assert!(t.finished && !t.finish_verified);
}

#[tokio::test]
async fn every_start_wipes_the_data() {
    let f = Fixture::start(Faults::none());
    let id = f.started().await;
    f.chunk(&id, "a.zip", "0-2", b"abc").await;
    assert!(f.sink.file_path(&id, "a.zip").is_some());
    f.started().await;
    assert!(f.sink.file_path(&id, "a.zip").is_none());
    let t = f.sink.transfer(&id).unwrap();
    assert_eq!(t.starts, 2);
    assert!(t.files.is_empty());
    assert_eq!(f.head(&id, "a.zip").await, (200, Some(0)));
}

#[tokio::test]
async fn revocation_wipes_and_refuses_chunks() {
    let f = Fixture::start(Faults::none());
    let id = f.started().await;
    f.chunk(&id, "a.zip", "0-2", b"abc").await;

    let r = f.start_transfer(&id, &revoked_token()).await;
    assert_eq!(r.status(), 200);
    let t = f.sink.transfer(&id).unwrap();
    assert!(t.revoked && t.grant.revoked && t.files.is_empty());
    assert!(f.sink.file_path(&id, "a.zip").is_none());
    let (status, _) = refusal(f.chunk(&id, "a.zip", "0-2", b"abc").await).await;
    assert_eq!(status, 409);
    assert_eq!(f.head(&id, "a.zip").await.0, 404, "nothing to resume");
    let r = f
        .post_json(
            f.sink.transfer_url(&id),
            serde_json::json!({"finished": true, "files": []}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(f.sink.transfer(&id).unwrap().finished);

    // The older consented grant does not replace the stored revoked one.
    f.start_transfer(&id, &grant_token()).await;
    assert!(f.sink.transfer(&id).unwrap().revoked);
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::with_config(crate::config(dir.path()), dir);
    let id = f.started().await;
    f.chunk(&id, "a.zip", "0-2", b"abc").await;
    f.finish_file(&id, "a.zip", b"abc").await;
    f.chunk(&id, "b.zip", "0-1", b"de").await;
    let Fixture { sink, dir, .. } = f;
    sink.stop();

    let f = Fixture::with_config(crate::config(dir.path()), dir);
    let t = f.sink.transfer(&id).unwrap();
    assert!(t.files["a.zip"].complete);
    assert_eq!(t.files["b.zip"].size, 2);
    assert_eq!(f.head(&id, "b.zip").await, (200, Some(2)));
    assert_eq!(f.chunk(&id, "b.zip", "2-2", b"f").await.status(), 200);
    assert_eq!(f.sink.read_file(&id, "b.zip").unwrap(), b"def");
}
