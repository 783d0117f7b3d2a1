//! Attacks on who is asking (issue 12, item 4): a stranger locking a user
//! out by failing logins, and a forged `X-Forwarded-For`. Each goes through
//! the real gateway (in this process) against the local Redis and
//! RabbitMQ.

use e2e::*;
use protocol::alias::login_body;
use protocol::anychain::{b64u_decode, b64u_encode, sign, to_token, SigningKey};
use serde_json::{json, Value as Json};

// ---- login throttling ---------------------------------------------------

/// A browser: its session and device cookies, and the address its proxy
/// reports (`X-Forwarded-For`, believed from the trusted loopback).
struct Browser {
    http: reqwest::Client,
    base: String,
    addr: String,
    session: Option<String>,
    device: Option<String>,
    csrf: String,
}

impl Browser {
    fn new(bank: &Bank, addr: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: bank.base.clone(),
            addr: addr.to_owned(),
            session: None,
            device: None,
            csrf: String::new(),
        }
    }

    fn request(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut cookies = Vec::new();
        if let Some(s) = &self.session {
            cookies.push(format!("alias_session={s}"));
        }
        if let Some(d) = &self.device {
            cookies.push(format!("alias_device={d}"));
        }
        let req = req.header("x-forwarded-for", &self.addr);
        if cookies.is_empty() {
            req
        } else {
            req.header("cookie", cookies.join("; "))
        }
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let value = || {
                v.split(';')
                    .next()
                    .unwrap()
                    .split_once('=')
                    .unwrap()
                    .1
                    .to_owned()
            };
            if v.starts_with("alias_session=") {
                self.session = Some(value());
            } else if v.starts_with("alias_device=") {
                self.device = Some(value());
            }
        }
    }

    async fn open(&mut self, path: &str) {
        let resp = self
            .request(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let html = resp.text().await.unwrap();
        let marker = "name=\"csrf-token\" content=\"";
        // A logged-in browser is sent on from the login page: it keeps the
        // CSRF token of its session.
        if let Some(at) = html.find(marker).map(|at| at + marker.len()) {
            self.csrf = html[at..at + html[at..].find('"').unwrap()].to_owned();
        }
    }

    async fn post(&mut self, path: &str, body: Json) -> (u16, Json) {
        let resp = self
            .request(self.http.post(format!("{}{path}", self.base)))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        let body: Json = resp.json().await.unwrap_or(Json::Null);
        if let Some(csrf) = body["csrf"].as_str() {
            self.csrf = csrf.to_owned();
        }
        (status, body)
    }
}

/// What a browser derives from a password, stood in for by fixed bytes.
struct Account {
    username: String,
    key: SigningKey,
    verifier: Vec<u8>,
}

impl Account {
    fn answer(&self, challenge: &Json) -> String {
        let challenge = b64u_decode(challenge.as_str().unwrap()).unwrap();
        to_token(&sign(&self.key, login_body(&challenge, ORIGIN), now()).unwrap())
    }

    async fn signup(&self, browser: &mut Browser) {
        browser.open("/signup").await;
        let (status, begun) = browser
            .post("/web/signup/begin", json!({"username": self.username}))
            .await;
        assert_eq!(status, 200, "{begun}");
        let record = json!({
            "username": self.username,
            "salt": b64u_encode(&[5; 16]),
            "pwhash": {"alg": "argon2id13", "opslimit": 2, "memlimit": 67_108_864},
            "box": format!("{{\"__box\":\"{}\"}}", b64u_encode(&[7u8; 120])),
            "publicPwdHash": b64u_encode(&self.verifier),
            "publicKey": b64u_encode(self.key.verifying_key().as_bytes()),
        });
        let (status, body) = browser
            .post(
                "/web/signup",
                json!({"record": record, "bind": bind_token(&self.key), "login": self.answer(&begun["challenge"])}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Logs in with `verifier` (the right one or a guess); the status of
    /// the step that ended it.
    async fn login(&self, browser: &mut Browser, verifier: &[u8]) -> (u16, Json) {
        browser.open("/login").await;
        let v = b64u_encode(verifier);
        let (status, begun) = browser
            .post(
                "/web/login/begin",
                json!({"username": self.username, "verifier": v}),
            )
            .await;
        if status != 200 {
            return (status, begun);
        }
        browser
            .post(
                "/web/login/finish",
                json!({"username": self.username, "verifier": v, "login": self.answer(&begun["challenge"])}),
            )
            .await
    }
}

#[actix_web::test]
async fn a_strangers_failed_logins_do_not_lock_out_the_user() {
    // Behind an ingress on loopback: X-Forwarded-For names the addresses.
    let bank = Bank::new("aq", &[("ALIAS_TRUSTED_PROXIES", "127.0.0.0/8")]).await;
    let owner = Account {
        username: "victim".into(),
        key: user(204),
        verifier: vec![42; 32],
    };
    let mut laptop = Browser::new(&bank, "203.0.113.10");
    owner.signup(&mut laptop).await;
    let (status, body) = owner.login(&mut laptop, &owner.verifier).await;
    assert_eq!(status, 200, "{body}");
    assert!(laptop.device.is_some(), "a device cookie after a login");

    // A stranger guesses from one address until throttled…
    let mut stranger = Browser::new(&bank, "198.51.100.66");
    let mut throttled = false;
    for guess in 0..20u8 {
        let (status, body) = owner.login(&mut stranger, &[guess; 32]).await;
        if status == 429 {
            assert_eq!(body["code"], "login_throttled", "{body}");
            throttled = true;
            break;
        }
        assert_eq!(status, 401, "{body}");
    }
    assert!(throttled, "the stranger's address is throttled");
    // …and from a dozen more addresses, a few guesses each.
    for a in 0..12u8 {
        let mut bot = Browser::new(&bank, &format!("192.0.2.{a}"));
        for guess in 0..4u8 {
            let (status, _) = owner.login(&mut bot, &[guess.wrapping_add(100); 32]).await;
            assert!(matches!(status, 401 | 429), "{status}");
        }
    }

    // The owner still logs in from the laptop (a known device)…
    let (status, body) = owner.login(&mut laptop, &owner.verifier).await;
    assert_eq!(status, 200, "the owner is locked out: {body}");
    // …and from a new phone on a new address (slowed, not blocked).
    let mut phone = Browser::new(&bank, "203.0.113.77");
    let (status, body) = owner.login(&mut phone, &owner.verifier).await;
    assert_eq!(
        status, 200,
        "the owner is locked out of a new device: {body}"
    );
    // The stranger stays throttled.
    let (status, _) = owner.login(&mut stranger, &owner.verifier).await;
    assert_eq!(status, 429);
    bank.cleanup().await;
}

// ---- client addresses -----------------------------------------------------

async fn discovery_from(bank: &Bank, forwarded: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/alias/", bank.base))
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn forged_forwarded_for_from_an_untrusted_peer_is_ignored() {
    // No trusted proxy: the peer (loopback) is the client whatever it claims.
    let bank = Bank::new("aq", &[("ALIAS_RATE_PER_SEC", "1")]).await;
    let mut limited = 0;
    for i in 0..8 {
        if discovery_from(&bank, &format!("198.51.100.{i}")).await == 429 {
            limited += 1;
        }
    }
    assert!(
        limited >= 4,
        "forged addresses evaded the rate limit ({limited} limited)"
    );
    bank.cleanup().await;

    // Behind a trusted proxy the forwarded address is the client: each
    // address has its own budget, and one address is limited alone.
    let bank = Bank::new(
        "aq",
        &[
            ("ALIAS_RATE_PER_SEC", "1"),
            ("ALIAS_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    for i in 0..8 {
        // What the client put first is not believed: the proxy's hop is.
        let forwarded = format!("6.6.6.6, 198.51.100.{i}");
        assert_eq!(discovery_from(&bank, &forwarded).await, 200, "{forwarded}");
    }
    let mut limited = 0;
    for _ in 0..8 {
        if discovery_from(&bank, "7.7.7.7, 198.51.100.200").await == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 4, "one client behind the proxy is limited");
    bank.cleanup().await;
}
