//! The user's web side: a browser session (cookie and CSRF token) and
//! sign-up through the gateway's pages.

use protocol::alias::login_body;
use protocol::anychain::{b64u_decode, b64u_encode, sign, to_token, SigningKey};

use crate::docs::{bind_token, now, user_pk};
use crate::stack::Bank;
use crate::ORIGIN;

/// A browser: one session cookie and its CSRF token, no redirects followed.
pub struct WebAgent {
    /// The HTTP client (no redirects followed).
    pub http: reqwest::Client,
    /// The gateway's base URL.
    pub base: String,
    /// The `alias_session` cookie, once set.
    pub cookie: Option<String>,
    /// The CSRF token of the last page or answer that gave one.
    pub csrf: String,
}

/// The text of an HTML attribute after `marker` (up to the next `"`).
pub fn html_attr(html: &str, marker: &str) -> Option<String> {
    let rest = &html[html.find(marker)? + marker.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

impl WebAgent {
    /// A browser without a session on `bank`'s gateway.
    pub fn new(bank: &Bank) -> WebAgent {
        WebAgent {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: bank.base.clone(),
            cookie: None,
            csrf: String::new(),
        }
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            if let Some(rest) = v.to_str().unwrap().strip_prefix("alias_session=") {
                self.cookie = Some(rest.split(';').next().unwrap().to_owned());
            }
        }
    }

    fn cookie(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(c) => req.header(reqwest::header::COOKIE, format!("alias_session={c}")),
            None => req,
        }
    }

    /// `GET path`: status, body and `Location`.
    pub async fn get(&mut self, path: &str) -> (u16, String, Option<String>) {
        let resp = self
            .cookie(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        let body = resp.text().await.unwrap();
        if let Some(csrf) = html_attr(&body, "name=\"csrf-token\" content=\"") {
            self.csrf = csrf;
        }
        (status, body, location)
    }

    /// `GET path` answered with JSON.
    pub async fn get_json(&mut self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .cookie(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// `POST path` with a JSON body and the CSRF header.
    pub async fn post_json(
        &mut self,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = self
            .cookie(self.http.post(format!("{}{path}", self.base)))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }
}

/// Signs `username` up with `key` (the browser's derived values stood in
/// for by fixed bytes) and leaves `agent` logged in.
pub async fn web_signup(agent: &mut WebAgent, username: &str, key: &SigningKey, n: u8) {
    let (status, _, _) = agent.get("/signup").await;
    assert_eq!(status, 200);
    let (status, begun) = agent
        .post_json(
            "/web/signup/begin",
            serde_json::json!({"username": username}),
        )
        .await;
    assert_eq!(status, 200, "{begun}");
    let challenge = b64u_decode(begun["challenge"].as_str().unwrap()).unwrap();
    let login = to_token(&sign(key, login_body(&challenge, ORIGIN), now()).unwrap());
    let record = serde_json::json!({
        "username": username,
        "salt": b64u_encode(&[n; 16]),
        "pwhash": {"alg": "argon2id13", "opslimit": 2, "memlimit": 67108864},
        "box": format!("{{\"__box\":\"{}\"}}", b64u_encode(&[7u8; 120])),
        "publicPwdHash": b64u_encode(&[n.wrapping_add(100); 32]),
        "publicKey": user_pk(key),
    });
    let (status, body) = agent
        .post_json(
            "/web/signup",
            serde_json::json!({"record": record, "bind": bind_token(key), "login": login}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    agent.csrf = body["csrf"].as_str().unwrap().to_owned();
}
