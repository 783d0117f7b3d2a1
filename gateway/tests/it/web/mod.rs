//! The user's side over HTTP: signup and login with browser-held keys,
//! sessions (fixation, CSRF), the authorization request (agree, deny,
//! forged contract, foreign redirect), revocation and re-export. The
//! browser's work (argon2id, signing) is done here with the Rust code:
//! the gateway only sees its results.

mod accounts;
mod assets;
mod consent;
mod delete;
mod flow;
mod preamble;
mod preview;
mod transfers;

use crate::fixtures::*;
use crate::{Bank, ORIGIN};
use protocol::alias::build::signed_grant;
use protocol::alias::{login_body, Grant};
use protocol::anychain::{b64u_decode, b64u_encode, sign, to_token, SigningKey, Value};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value as Json};

/// A user agent: one cookie, no redirects followed.
struct Agent {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
    csrf: String,
}

fn attr(html: &str, marker: &str) -> String {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in page"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

impl Agent {
    fn new(bank: &Bank) -> Agent {
        Agent {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: bank.url(""),
            cookie: None,
            csrf: String::new(),
        }
    }

    fn keep_cookie(&mut self, resp: &Response) -> bool {
        let mut changed = false;
        for v in resp.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            if let Some(rest) = v.strip_prefix("alias_session=") {
                let value = rest.split(';').next().unwrap().to_owned();
                assert!(v.contains("HttpOnly"), "{v}");
                assert!(v.contains("SameSite=Lax"), "{v}");
                assert!(v.contains("Max-Age="), "{v}");
                changed = true;
                self.cookie = Some(value);
            }
        }
        changed
    }

    fn with_cookie(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(c) => req.header(COOKIE, format!("alias_session={c}")),
            None => req,
        }
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String, Option<String>) {
        let resp = self
            .with_cookie(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        self.keep_cookie(&resp);
        let status = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        let body = resp.text().await.unwrap();
        if body.contains("name=\"csrf-token\"") {
            self.csrf = attr(&body, "name=\"csrf-token\" content=\"");
        }
        (status, body, location)
    }

    async fn post_json(&mut self, path: &str, body: Json, csrf: bool) -> (StatusCode, Json) {
        let mut req = self
            .with_cookie(self.http.post(format!("{}{path}", self.base)))
            .json(&body);
        if csrf {
            req = req.header("x-csrf-token", &self.csrf);
        }
        let resp = req.send().await.unwrap();
        self.keep_cookie(&resp);
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Json::Null))
    }

    async fn post_form(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Option<String>) {
        let resp = self
            .with_cookie(self.http.post(format!("{}{path}", self.base)))
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep_cookie(&resp);
        let location = resp
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        (resp.status(), location)
    }
}

/// What the browser derives from a password, stood in for by fixed bytes.
struct Account {
    username: String,
    key: SigningKey,
    salt: Vec<u8>,
    verifier: Vec<u8>,
}

impl Account {
    fn new(username: &str, n: u8) -> Account {
        Account {
            username: username.to_owned(),
            key: user_key(n),
            salt: vec![n; 16],
            verifier: vec![n.wrapping_add(100); 32],
        }
    }

    fn pk(&self) -> String {
        b64u_encode(self.key.verifying_key().as_bytes())
    }

    fn record(&self) -> Json {
        json!({
            "username": self.username,
            "salt": b64u_encode(&self.salt),
            "pwhash": {"alg": "argon2id13", "opslimit": 2, "memlimit": 67108864},
            "box": format!("{{\"__box\":\"{}\"}}", b64u_encode(&[7u8; 120])),
            "publicPwdHash": b64u_encode(&self.verifier),
            "publicKey": self.pk(),
        })
    }

    fn answer(&self, challenge: &str) -> String {
        let body = login_body(&b64u_decode(challenge).unwrap(), ORIGIN);
        to_token(&sign(&self.key, body, now()).unwrap())
    }
}

async fn signup(agent: &mut Agent, account: &Account) {
    let (status, _, _) = agent.get("/signup").await;
    assert_eq!(status, StatusCode::OK);
    let (status, begun) = agent
        .post_json(
            "/web/signup/begin",
            json!({"username": account.username}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{begun}");
    let answer = account.answer(begun["challenge"].as_str().unwrap());
    let (status, body) = agent
        .post_json(
            "/web/signup",
            json!({"record": account.record(), "bind": bind(&account.key, ORIGIN), "login": answer}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    agent.csrf = body["csrf"].as_str().unwrap().to_owned();
}

async fn login(agent: &mut Agent, account: &Account) -> (StatusCode, Json) {
    let (status, body) = agent
        .post_json(
            "/web/login/begin",
            json!({"username": account.username, "verifier": b64u_encode(&account.verifier)}),
            true,
        )
        .await;
    if status != StatusCode::OK {
        return (status, body);
    }
    assert_eq!(body["publicKey"], account.pk());
    let answer = account.answer(body["challenge"].as_str().unwrap());
    let (status, body) = agent
        .post_json(
            "/web/login/finish",
            json!({"username": account.username, "verifier": b64u_encode(&account.verifier), "login": answer}),
            true,
        )
        .await;
    if status == StatusCode::OK {
        agent.csrf = body["csrf"].as_str().unwrap().to_owned();
    }
    (status, body)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn query_of(location: &str) -> Vec<(String, String)> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs().into_owned().collect()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

const CLIENT_DOMAIN: &str = "127.0.0.1:9";
