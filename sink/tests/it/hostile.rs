//! Hostile peers against a real sink: strangers on the admin routes, starts
//! of contracts of other clients, tampering with a finished transfer, huge
//! ranges, stalled and slow bodies, bodies without a length, quotas, and the
//! memory of a real `alias-sink` process under stalled connections.

use crate::*;
use protocol::alias::PushId;
use protocol::anychain::signing_key_from_seed;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A sink receiving for T's client, with `edit` applied to its config.
fn hostile_fixture(edit: impl FnOnce(&mut SinkConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        SinkConfig::new(dir.path()).with_client_key(&sink::client_key_of(&grant_token()).unwrap());
    edit(&mut config);
    Fixture::with_config(config, dir)
}

/// Opens a connection and sends a chunk's request head for `path`.
async fn chunk_head(addr: std::net::SocketAddr, path: &str, extra: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n{extra}\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Reads one answer (status and body) within `within`.
async fn answer(s: &mut (impl tokio::io::AsyncRead + Unpin), within: Duration) -> (u16, String) {
    let read = async {
        let mut buf = Vec::new();
        let mut piece = [0u8; 4096];
        loop {
            let n = s.read(&mut piece).await.unwrap_or(0);
            buf.extend_from_slice(&piece[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len || n == 0 {
                    let status = text[9..12].parse().unwrap();
                    return (status, text[end + 4..].to_owned());
                }
            }
            assert!(n > 0, "the connection closed without an answer: {text:?}");
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("no answer in time")
}

#[tokio::test]
async fn admin_routes_are_closed_by_default_and_behind_the_token() {
    let f = hostile_fixture(|_| {});
    let r = f
        .http
        .post(f.url("/sink/faults"))
        .json(&serde_json::json!({"dead": true, "drop_every": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        f.sink.faults(),
        Faults::none(),
        "a stranger switched a fault"
    );
    for path in ["/", "/sink/", "/?format=json", "/sink/faults"] {
        assert_eq!(
            f.http.get(f.url(path)).send().await.unwrap().status(),
            404,
            "{path}"
        );
    }
    let r = f.http.get(f.url("/healthz")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "ok".into())
    );
    // The transfer still works.
    let id = f.started().await;
    assert_eq!(f.chunk(&id, "a.zip", "0-2", b"abc").await.status(), 200);

    // With a token: nothing without it, or with another one.
    let f = hostile_fixture(|c| {
        c.admin = sink::Admin {
            enabled: true,
            token: Some("s3cret".into()),
        }
    });
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret"),
        Some("Bearer s3cret2"),
    ] {
        let mut req = f
            .http
            .post(f.url("/sink/faults"))
            .json(&serde_json::json!({"dead": true}));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), 404, "{auth:?}");
        let mut req = f.http.get(f.url("/?format=json"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), 404, "{auth:?}");
    }
    assert_eq!(f.sink.faults(), Faults::none());
    let r = f
        .http
        .post(f.url("/sink/faults"))
        .header("Authorization", "Bearer s3cret")
        .json(&serde_json::json!({"delay_ms": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(f.sink.faults().delay_ms, 5);
}

#[tokio::test]
async fn starts_of_other_clients_contracts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = signing_key_from_seed(&[9; 32]);
    let config = SinkConfig::new(dir.path()).with_client_key(other.verifying_key().as_bytes());
    let f = Fixture::with_config(config, dir);
    let id = contract_hash();
    let r = f.start_transfer(&id, &grant_token()).await;
    let (status, reason) = refusal(r).await;
    assert_eq!(status, 403, "{reason}");
    assert!(f.sink.transfers().is_empty());
    assert!(!f.dir.path().join(&id).exists(), "nothing stored");
    assert_eq!(
        refusal(f.chunk(&id, "a.zip", "0-2", b"abc").await).await.0,
        409
    );

    // No key at all: every start refused.
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::with_config(SinkConfig::new(dir.path()), dir);
    assert_eq!(
        refusal(f.start_transfer(&id, &grant_token()).await).await.0,
        403
    );

    // Once the client's key is configured, the same start is accepted.
    f.sink
        .trust_client(&sink::client_key_of(&grant_token()).unwrap());
    f.started().await;
}

#[tokio::test]
async fn a_finished_transfer_cannot_be_changed() {
    let f = hostile_fixture(|_| {});
    let id = f.started().await;
    assert_eq!(f.chunk(&id, "a.zip", "0-2", b"abc").await.status(), 200);
    assert_eq!(f.finish_file(&id, "a.zip", b"abc").await.status(), 200);
    let listed = |files: &[(&str, &[u8])]| {
        serde_json::json!({"finished": true, "files": files.iter().map(|(n, b)| {
            serde_json::json!({"name": n, "size": b.len(), "blake2b": b2b(b)})
        }).collect::<Vec<_>>()})
    };
    let r = f
        .post_json(f.sink.transfer_url(&id), listed(&[("a.zip", b"abc")]))
        .await;
    assert_eq!(r.status(), 200);

    // A stranger who knows the id adds a file and re-sends the finish.
    let r = f.chunk(&id, "evil.zip", "0-3", b"evil").await;
    assert_eq!(refusal(r).await.0, 409);
    let r = f.finish_file(&id, "evil.zip", b"").await;
    assert_eq!(refusal(r).await.0, 409);
    let r = f.chunk(&id, "a.zip", "3-6", b"more").await;
    assert_eq!(refusal(r).await.0, 409);
    let r = f
        .post_json(
            f.sink.transfer_url(&id),
            listed(&[("a.zip", b"abc"), ("evil.zip", b"evil")]),
        )
        .await;
    assert_eq!(refusal(r).await.0, 400);
    let t = f.sink.transfer(&id).unwrap();
    assert!(t.finished && t.finish_verified);
    assert_eq!(t.files.keys().collect::<Vec<_>>(), vec!["a.zip"]);
    assert!(f.sink.file_path(&id, "evil.zip").is_none());
    assert_eq!(f.sink.read_file(&id, "a.zip").unwrap(), b"abc");
}

#[tokio::test]
async fn huge_ranges_are_refused_not_wrapped() {
    let f = hostile_fixture(|_| {});
    let id = f.started().await;
    for range in ["0-18446744073709551615", "bytes=0-18446744073709551615"] {
        let (status, _) = refusal(f.chunk(&id, "a.zip", range, b"hello").await).await;
        assert_eq!(status, 400, "{range}");
    }
    let r = f
        .chunk(
            &id,
            "a.zip",
            "18446744073709551615-18446744073709551615",
            b"h",
        )
        .await;
    assert_eq!(refusal(r).await.0, 409);
    assert!(f.sink.file_path(&id, "a.zip").is_none());

    // The reference mode's loose reading too.
    f.sink.set_faults(Faults::reference());
    let r = f
        .chunk(&id, "a.zip", "0-18446744073709551615", b"hello")
        .await;
    assert_eq!(refusal(r).await.0, 400);
    assert!(f.sink.file_path(&id, "a.zip").is_none());
}

#[tokio::test]
async fn a_stalled_chunk_holds_no_lock() {
    // A long idle timeout: the stalled body stays open during the test.
    let f = hostile_fixture(|c| {
        c.limits.body_idle = Duration::from_secs(60);
        c.limits.body_min_rate = 0;
    });
    let id = f.started().await;
    assert_eq!(f.chunk(&id, "a.zip", "0-2", b"abc").await.status(), 200);
    let path = format!("/alias/push/{id}/a.zip");
    let mut stalled = chunk_head(
        f.sink.addr(),
        &path,
        "Range: 3-12\r\nContent-Length: 10\r\n",
    )
    .await;
    stalled.write_all(b"d").await.unwrap();
    // The sink has read the byte once the counters show the request.
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.sink.counters().chunk_requests < 2 {
        assert!(Instant::now() < deadline, "the stalled chunk never arrived");
        tokio::task::yield_now().await;
    }
    // HEAD and other chunks of the same transfer take its I/O lock.
    let t0 = Instant::now();
    let head = tokio::time::timeout(Duration::from_secs(10), f.head(&id, "a.zip"))
        .await
        .expect("HEAD waited for the stalled chunk");
    assert_eq!(head, (200, Some(3)));
    let r = tokio::time::timeout(Duration::from_secs(10), f.chunk(&id, "b.zip", "0-1", b"xy"))
        .await
        .expect("a chunk waited for the stalled chunk");
    assert_eq!(r.status(), 200);
    assert!(t0.elapsed() < Duration::from_secs(10));
    drop(stalled);
}

#[tokio::test]
async fn stalled_and_slow_bodies_time_out() {
    let f = hostile_fixture(|c| {
        c.limits.body_idle = Duration::from_millis(500);
        c.limits.body_min_rate = 0;
    });
    let id = f.started().await;
    let path = format!("/alias/push/{id}/a.zip");
    let mut s = chunk_head(f.sink.addr(), &path, "Range: 0-9\r\nContent-Length: 10\r\n").await;
    s.write_all(b"a").await.unwrap();
    let (status, body) = answer(&mut s, Duration::from_secs(10)).await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("body_timeout"), "{body}");
    // The start and finish bodies too.
    let mut s = TcpStream::connect(f.sink.addr()).await.unwrap();
    let head = format!(
        "PUT /alias/push/{id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant="
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (status, body) = answer(&mut s, Duration::from_secs(10)).await;
    assert_eq!(status, 408, "{body}");

    // One byte every 100 ms never stalls, but is below 1000 bytes/s.
    let f = hostile_fixture(|c| {
        c.limits.body_idle = Duration::from_secs(30);
        c.limits.body_min_rate = 1000;
        c.limits.body_grace = Duration::from_millis(300);
    });
    let id = f.started().await;
    let path = format!("/alias/push/{id}/a.zip");
    let s = chunk_head(
        f.sink.addr(),
        &path,
        "Range: 0-99\r\nContent-Length: 100\r\n",
    )
    .await;
    let (mut rd, mut wr) = s.into_split();
    let t0 = Instant::now();
    let trickle = tokio::spawn(async move {
        while t0.elapsed() < Duration::from_secs(8) {
            if wr.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // The sink answers (408) while the trickle goes on.
    let (status, body) = answer(&mut rd, Duration::from_secs(8)).await;
    trickle.abort();
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("body_too_slow"), "{body}");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "the trickle was accepted for 8 s"
    );
}

#[tokio::test]
async fn chunks_without_a_length_are_spooled_to_disk() {
    let f = hostile_fixture(|c| {
        c.limits.body_idle = Duration::from_millis(1500);
        c.limits.body_min_rate = 0;
        c.limits.spool_memory = 64 << 10;
    });
    let id = f.started().await;
    let path = format!("/alias/push/{id}/a.zip");
    let mut s = chunk_head(
        f.sink.addr(),
        &path,
        "Transfer-Encoding: chunked\r\nRange: 0-8388607\r\n",
    )
    .await;
    let piece = vec![7u8; 1 << 20];
    for _ in 0..4 {
        s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(&piece).await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
    }
    // 4 MiB of the 8 announced arrived, then nothing: they are on disk.
    let spool = f.dir.path().join("spool~");
    let spooled = || -> u64 {
        std::fs::read_dir(&spool)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while spooled() < (4 << 20) - (64 << 10) {
        assert!(
            Instant::now() < deadline,
            "only {} bytes spooled",
            spooled()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = answer(&mut s, Duration::from_secs(10)).await;
    assert_eq!(status, 408);
    // Nothing was written without the whole body, and the spool is gone.
    assert_eq!(spooled(), 0);
    assert_eq!(f.head(&id, "a.zip").await, (200, Some(0)));
}

#[tokio::test]
async fn quotas_on_files_bytes_and_transfers() {
    let f = hostile_fixture(|c| {
        c.limits.max_files = 2;
        c.limits.max_transfer_bytes = 10;
    });
    let id = f.started().await;
    assert_eq!(f.chunk(&id, "a.zip", "0-3", b"abcd").await.status(), 200);
    assert_eq!(f.chunk(&id, "b.zip", "0-3", b"efgh").await.status(), 200);
    let r = f.chunk(&id, "c.zip", "0-0", b"i").await;
    assert_eq!(refusal(r).await.0, 413);
    let r = f.chunk(&id, "b.zip", "4-6", b"jkl").await;
    assert_eq!(refusal(r).await.0, 413);
    assert_eq!(f.chunk(&id, "b.zip", "4-5", b"jk").await.status(), 200);
    assert_eq!(f.sink.transfer(&id).unwrap().files.len(), 2);

    // With grant-hash ids, T and its revocation are two transfers.
    let f = hostile_fixture(|c| {
        c.push_id = PushId::Grant;
        c.limits.max_transfers = 1;
    });
    assert_eq!(
        f.start_transfer(&grant_hash(), &grant_token())
            .await
            .status(),
        200
    );
    let revoked_id = protocol::alias::Grant::from_token(
        &revoked_token(),
        &protocol::anychain::Limits::default(),
    )
    .unwrap()
    .grant_hash()
    .unwrap()
    .to_b64();
    let r = f.start_transfer(&revoked_id, &revoked_token()).await;
    assert_eq!(refusal(r).await.0, 507);
    assert_eq!(f.sink.transfers().len(), 1);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A contract of its own client key (`seed`), and a grant of it: what any
/// stranger can make. Returns (transfer id, grant token).
fn own_contract(seed: u8) -> (String, String) {
    use protocol::alias::build::{group, scope, signed_grant, ClientDeclDoc, ContractDoc};
    use protocol::alias::Contract;
    use protocol::anychain::to_token;
    let client_key = signing_key_from_seed(&[seed; 32]);
    let client = ClientDeclDoc::new(format!("c{seed}"), "127.0.0.1:1")
        .sign(&client_key, 1_574_158_519_000.0)
        .unwrap();
    let contract = ContractDoc::new(client)
        .usage("tests")
        .contractual(group([scope("google", "photos")], &[]))
        .scheme("http")
        .build();
    let id = Contract::new(&contract).unwrap().hash().unwrap().to_b64();
    let user = signing_key_from_seed(&[seed.wrapping_add(100); 32]);
    let grant = signed_grant(&user, &contract, vec![], vec![], 1.7e12).unwrap();
    (id, to_token(&grant))
}

/// A real `alias-sink` process (`HOSTILE_SINK_BIN` overrides the binary;
/// `HOSTILE_SINK_LEGACY=1` for one without `--any-client`), 10 connections
/// (`HOSTILE_CONNS`), each to its own transfer (of a contract of its own
/// client, as any stranger could make when the sink accepted any client),
/// each sending `HOSTILE_MIB` MiB (default 24) of a chunk without a length
/// and stalling: its memory stays flat.
#[tokio::test]
async fn stalled_connections_keep_a_real_sink_flat() {
    let bin = std::env::var("HOSTILE_SINK_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_alias-sink").to_owned());
    let legacy = std::env::var("HOSTILE_SINK_LEGACY").is_ok();
    let conns: u8 = std::env::var("HOSTILE_CONNS").map_or(10, |v| v.parse().unwrap());
    let mib: usize = std::env::var("HOSTILE_MIB").map_or(24, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = std::process::Command::new(&bin);
    cmd.arg("--listen")
        .arg(addr.to_string())
        .arg("--dir")
        .arg(dir.path());
    if !legacy {
        cmd.args([
            "--any-client",
            "--body-idle-secs",
            "120",
            "--body-min-rate",
            "0",
        ]);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let start = |id: String, grant: String| {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant", &grant)
            .finish();
        http.put(format!("http://{addr}/alias/push/{id}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let transfers: Vec<(String, String)> = (0..conns).map(own_contract).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while start(transfers[0].0.clone(), transfers[0].1.clone())
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the sink did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (id, grant) in &transfers {
        assert_eq!(
            start(id.clone(), grant.clone()).await.unwrap().status(),
            200
        );
    }
    let before = rss_kib(child.id());
    let mut writers = Vec::new();
    let mut streams = Vec::new();
    for (id, _) in &transfers {
        let path = format!("/alias/push/{id}/a.zip");
        let s = chunk_head(
            addr,
            &path,
            "Transfer-Encoding: chunked\r\nRange: 0-67108863\r\n",
        )
        .await;
        let (rd, mut wr) = s.into_split();
        streams.push(rd);
        writers.push(tokio::spawn(async move {
            let piece = vec![7u8; 1 << 20];
            for _ in 0..mib {
                wr.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await
                    .unwrap();
                wr.write_all(&piece).await.unwrap();
                wr.write_all(b"\r\n").await.unwrap();
            }
            wr
        }));
    }
    // Sample the peak while the bodies arrive, and a moment after.
    let mut peak = rss_kib(child.id());
    let mut open = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while writers.iter().any(|w| !w.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "the sink stopped reading the bodies"
        );
        peak = peak.max(rss_kib(child.id()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in writers {
        open.push(w.await.unwrap());
    }
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        peak = peak.max(rss_kib(child.id()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "alias-sink ({bin}): VmRSS {} MiB before, {} MiB peak with {conns} stalled chunks of {mib} MiB",
        before / 1024,
        peak / 1024
    );
    drop((open, streams));
    let _ = child.kill();
    let _ = child.wait();
    if !legacy {
        assert!(
            peak < before + 64 * 1024,
            "memory grew from {before} KiB to {peak} KiB"
        );
    }
}
