//! alias-sink integration tests: the real server on loopback, driven with
//! reqwest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod faults;
mod hostile;
mod reference;
mod wire;

use protocol::alias::Grant;
use protocol::anychain::{b64u_encode, from_json_str, to_token, Limits, Value};
use reqwest::header::{CONTENT_TYPE, RANGE};
use reqwest::{Client, Response};
use sink::{Faults, Sink, SinkConfig, SinkHandle};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/tests/data/protocol-examples.json"
);

fn example(key: &str) -> String {
    let text = std::fs::read_to_string(VECTORS).expect("protocol-examples.json");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[key].as_str().unwrap().to_owned()
}

/// Token T of PROTOCOL.md §B (a consented grant).
pub fn grant_token() -> String {
    example("grant_token")
}

/// The stored revoked grant of the same contract (a newer date).
pub fn revoked_token() -> String {
    example("revoked_token")
}

/// The contract hash of T: the default transfer id.
pub fn contract_hash() -> String {
    example("grant_contract_hash")
}

/// The grant hash of T.
pub fn grant_hash() -> String {
    example("grant_hash")
}

/// A valid signature that is not a grant: T's signed client declaration.
pub fn client_decl_token() -> String {
    let t = Grant::from_token(&grant_token(), &Limits::default()).unwrap();
    to_token(t.body().get("contract").unwrap().get("client").unwrap())
}

/// T with its date changed (the signature no longer matches).
pub fn tampered_token() -> String {
    let Value::Dict(mut d) = from_json_str(&grant_token(), &Limits::default()).unwrap() else {
        unreachable!()
    };
    d.insert("date", Value::Number(1_574_158_520_001.0));
    to_token(&Value::Dict(d))
}

pub fn b2b(bytes: &[u8]) -> String {
    b64u_encode(blake2b_simd::blake2b(bytes).as_bytes())
}

/// A sink configuration under `dir` receiving for T's client, with the admin
/// routes on (loopback).
pub fn config(dir: &std::path::Path) -> SinkConfig {
    SinkConfig::new(dir)
        .with_client_key(&sink::client_key_of(&grant_token()).unwrap())
        .with_admin(None)
}

/// A running sink in a temporary directory, and an HTTP client.
pub struct Fixture {
    pub sink: SinkHandle,
    pub http: Client,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn start(faults: Faults) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.faults = faults;
        Self::with_config(config, dir)
    }

    pub fn with_config(config: SinkConfig, dir: tempfile::TempDir) -> Fixture {
        let (_, sink) = Sink::start(config).unwrap();
        Fixture {
            sink,
            http: Client::new(),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.sink.addr())
    }

    pub async fn start_transfer(&self, id: &str, token: &str) -> Response {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant", token)
            .finish();
        self.http
            .put(self.sink.transfer_url(id))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Starts the transfer of T and checks the answer.
    pub async fn started(&self) -> String {
        let id = contract_hash();
        let r = self.start_transfer(&id, &grant_token()).await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        id
    }

    pub async fn chunk(&self, id: &str, file: &str, range: &str, body: &[u8]) -> Response {
        self.chunk_with(id, file, Some(range), "application/octet-stream", body)
            .await
    }

    pub async fn chunk_with(
        &self,
        id: &str,
        file: &str,
        range: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Response {
        let mut req = self
            .http
            .put(self.sink.file_url(id, file))
            .header(CONTENT_TYPE, content_type)
            .body(body.to_vec());
        if let Some(range) = range {
            req = req.header(RANGE, range);
        }
        req.send().await.unwrap()
    }

    pub async fn head(&self, id: &str, file: &str) -> (u16, Option<u64>) {
        let r = self
            .http
            .head(self.sink.file_url(id, file))
            .send()
            .await
            .unwrap();
        let offset = r
            .headers()
            .get("upload-offset")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        (r.status().as_u16(), offset)
    }

    pub async fn post_json(&self, url: String, json: serde_json::Value) -> Response {
        self.http.post(url).json(&json).send().await.unwrap()
    }

    pub async fn finish_file(&self, id: &str, file: &str, body: &[u8]) -> Response {
        self.post_json(
            self.sink.file_url(id, file),
            serde_json::json!({"action": "finish", "size": body.len(), "blake2b": b2b(body)}),
        )
        .await
    }
}

/// Status and `reason` of a JSON refusal.
pub async fn refusal(r: Response) -> (u16, String) {
    let status = r.status().as_u16();
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["status"], "error", "{json}");
    assert!(json["code"].is_string(), "{json}");
    (status, json["reason"].as_str().unwrap().to_owned())
}

/// The crate rule: a client of the bank needs only the protocol crate, never
/// the bank's runtime (Redis, RabbitMQ, storage).
#[test]
fn the_sink_needs_only_the_protocol() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("manifest");
    for line in manifest.lines() {
        let name = line.split(['.', '=', ' ']).next().unwrap_or("");
        assert!(
            !matches!(name, "runtime" | "gateway" | "processor" | "pusher"),
            "alias-sink must not depend on {name} (ARCHITECTURE.md, crate rules)"
        );
    }
}
