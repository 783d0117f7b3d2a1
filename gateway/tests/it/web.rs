//! The user's side over HTTP: signup and login with browser-held keys,
//! sessions (fixation, CSRF), the authorization request (agree, deny,
//! forged contract, foreign redirect), revocation and re-export. The
//! browser's work (argon2id, signing) is done here with the Rust code:
//! the gateway only sees its results.

use crate::fixtures::*;
use crate::{Bank, ORIGIN};
use protocol::alias::{grant_body, login_body, Grant};
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

#[actix_web::test]
async fn whole_flow_agree_deny_revoke_and_reexport() {
    let bank = Bank::start().await;
    let mut agent = Agent::new(&bank);
    let account = Account::new("alice", 61);
    let contract = contract("Test client", CLIENT_DOMAIN);
    let token = to_token(&contract);
    let request = format!("/request?contract={}&state=st%20%261", enc(&token));

    // Not logged in: sent to log in, and back to the request afterwards.
    let (status, _, location) = agent.get(&request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(
        location.starts_with("/login?next=%2Frequest%3Fcontract"),
        "{location}"
    );
    signup(&mut agent, &account).await;
    assert!(bank.app.state.is_known_user(&account.pk()).await.unwrap());

    // The consent page.
    let (status, page, _) = agent.get(&request).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Test client"));
    assert!(
        page.contains("Your Google searches"),
        "catalog description of the contractual scope"
    );
    assert!(page.contains("YouTube"), "the consent scope");
    assert!(
        page.contains("id=\"consent-0-0\""),
        "one switch per consent scope"
    );
    assert!(!page.contains("checked"), "switches are off by default");
    assert!(page.contains("alice@bank.test"), "the user's alias");
    let rid = attr(&page, "id=\"request-id\" value=\"");

    // Agree with the switch off: consent matrix [[false]].
    let body = grant_body(&contract, vec![vec![false]], vec![]).unwrap();
    let grant = to_token(&sign(&account.key, body, now()).unwrap());
    let bind_token = bind(&account.key, ORIGIN);
    let agree = json!({"grant": grant, "bind": bind_token});
    // Without the CSRF token: refused.
    let (status, body) = agent
        .post_json(&format!("/request/{rid}/agree"), agree.clone(), false)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("csrf"))
    );
    let (status, body) = agent
        .post_json(&format!("/request/{rid}/agree"), agree.clone(), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let redirect = body["redirect"].as_str().unwrap();
    assert!(
        redirect.starts_with("http://127.0.0.1:9/alias/cb/?"),
        "{redirect}"
    );
    let q = query_of(redirect);
    assert_eq!(param(&q, "state"), Some("st &1"));
    let code = Grant::from_token(param(&q, "code").unwrap(), &Default::default()).unwrap();
    assert_eq!(code.signer_b64(), account.pk());
    assert_eq!(
        code.body().get("base").and_then(|b| b.get("consent")),
        Some(&Value::List(vec![Value::List(vec![Value::Bool(false)])]))
    );
    assert_eq!(param(&q, "bind"), Some(bind_token.as_str()));
    // Stored as the user's grant.
    let hash = code.contract_hash().unwrap().to_b64();
    assert_eq!(
        bank.app
            .state
            .stored_grant(&account.pk(), &hash)
            .await
            .unwrap()
            .as_deref(),
        Some(grant.as_str())
    );
    // The request was answered: it cannot be answered again.
    let (status, _) = agent
        .post_json(&format!("/request/{rid}/agree"), agree, true)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Agree again with the switch on: the new matrix replaces the old.
    let (_, page, _) = agent.get(&request).await;
    assert!(page.contains("You agreed to this before"));
    assert!(page.contains("data-earlier-grant=\"true\""));
    let rid = attr(&page, "id=\"request-id\" value=\"");
    let body = grant_body(&contract, vec![vec![true]], vec![]).unwrap();
    let grant_on = to_token(&sign(&account.key, body, now() + 1.0).unwrap());
    let (status, body) = agent
        .post_json(
            &format!("/request/{rid}/agree"),
            json!({"grant": grant_on, "bind": bind_token}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let q = query_of(body["redirect"].as_str().unwrap());
    let code = Grant::from_token(param(&q, "code").unwrap(), &Default::default()).unwrap();
    assert_eq!(
        code.scopes().unwrap().len(),
        2,
        "contractual + the consented scope"
    );

    // A grant for another contract than the one shown: refused.
    let (_, page, _) = agent.get(&request).await;
    let rid = attr(&page, "id=\"request-id\" value=\"");
    let other =
        crate::fixtures::grant(&account.key, &contract_named("Other", CLIENT_DOMAIN), now());
    let (status, body) = agent
        .post_json(
            &format!("/request/{rid}/agree"),
            json!({"grant": other, "bind": bind_token}),
            true,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("contract_mismatch"))
    );
    // Someone else's grant: refused.
    let stranger = crate::fixtures::grant(&user_key(62), &contract, now() + 5.0);
    let (status, _) = agent
        .post_json(
            &format!("/request/{rid}/agree"),
            json!({"grant": stranger, "bind": bind_token}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Deny: without CSRF refused. The user agreed before, so a plain form
    // post (the page's script not running) changes nothing and says why.
    let (status, _) = agent.post_form(&format!("/request/{rid}/deny"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf = agent.csrf.clone();
    let (status, location) = agent
        .post_form(&format!("/request/{rid}/deny"), &[("csrf", &csrf)])
        .await;
    assert_eq!((status, location), (StatusCode::CONFLICT, None));
    let stored = bank
        .app
        .state
        .stored_grant(&account.pk(), &hash)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(grant_on.as_str()), "still agreed");
    // From the script: without a revocation, refused; a revocation of
    // another contract or by someone else, refused.
    let (status, body) = agent
        .post_json(&format!("/request/{rid}/deny"), json!({}), true)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("revocation_needed"))
    );
    for (bad, code) in [
        (
            revoked(
                &account.key,
                &contract_named("Other", CLIENT_DOMAIN),
                now() + 2.0,
            ),
            "contract_mismatch",
        ),
        (revoked(&user_key(62), &contract, now() + 2.0), "not_yours"),
        (
            crate::fixtures::grant(&account.key, &contract, now() + 2.0),
            "not_revoked",
        ),
    ] {
        let (status, body) = agent
            .post_json(
                &format!("/request/{rid}/deny"),
                json!({"revocation": bad}),
                true,
            )
            .await;
        assert_eq!(body["code"].as_str(), Some(code), "{status} {body}");
    }
    // With the user's revocation: withdrawn, and back to the client with
    // access_denied.
    let withdrawal = revoked(&account.key, &contract, now() + 3.0);
    let (status, body) = agent
        .post_json(
            &format!("/request/{rid}/deny"),
            json!({"revocation": withdrawal}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let location = body["redirect"].as_str().unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:9/alias/cb/?"),
        "{location}"
    );
    let q = query_of(location);
    assert_eq!(param(&q, "error"), Some("access_denied"));
    assert_eq!(param(&q, "state"), Some("st &1"));
    assert_eq!(param(&q, "code"), None);
    let stored = bank
        .app
        .state
        .stored_grant(&account.pk(), &hash)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(withdrawal.as_str()), "withdrawn");
    let t = bank.app.state.transfer(&hash).await.unwrap().unwrap();
    assert!(t.revoked, "the client is told");
    assert_eq!(t.generation, 1);
    // Nothing agreed any more: a plain form post denies without a script.
    let (_, page, _) = agent.get(&request).await;
    assert!(page.contains("data-earlier-grant=\"false\""));
    let rid = attr(&page, "id=\"request-id\" value=\"");
    let csrf = agent.csrf.clone();
    let (status, location) = agent
        .post_form(&format!("/request/{rid}/deny"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let q = query_of(&location.unwrap());
    assert_eq!(param(&q, "error"), Some("access_denied"));
    // A form post to agree (the script not running): a page that says
    // nothing was shared; the request stays open.
    let (_, page, _) = agent.get(&request).await;
    let rid = attr(&page, "id=\"request-id\" value=\"");
    let (status, _) = agent
        .post_form(&format!("/request/{rid}/agree"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Agree again, so that the flow goes on with a grant.
    let body = grant_body(&contract, vec![vec![true]], vec![]).unwrap();
    let grant_again = to_token(&sign(&account.key, body, now() + 4.0).unwrap());
    let (status, body) = agent
        .post_json(
            &format!("/request/{rid}/agree"),
            json!({"grant": grant_again, "bind": bind_token}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // client_id= finds the contract seen before.
    let client_id = protocol::alias::Contract::new(&contract)
        .unwrap()
        .client()
        .unwrap()
        .id()
        .unwrap()
        .to_b64();
    let (status, page, _) = agent.get(&format!("/request?client_id={client_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Test client"));

    // Dashboard: the client with what it may see.
    let (status, page, _) = agent.get("/dashboard").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Test client") && page.contains("Your Google searches"));

    // Re-export: on for this grant, then a newer Google dump queues a transfer.
    let (status, body) = agent
        .post_json(
            "/web/reexport",
            json!({"contract": hash, "enabled": true}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let path = "/alias/dumps/google/takeout-2.zip";
    let auth = signed_request(&account.key, "PUT", path, Some(4), now());
    let resp = bank
        .http
        .put(bank.url(path))
        .header("Authorization", format!("Alias {auth}"))
        .body(vec![1, 2, 3, 4])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Json = resp.json().await.unwrap();
    assert_eq!(body["reexports"], json!([hash]), "{body}");
    let t = bank.app.state.transfer(&hash).await.unwrap().unwrap();
    assert_eq!(t.generation, 2);
    assert!(!t.revoked);
    // An Amazon dump does not concern this grant.
    let path = "/alias/dumps/amazon/orders.zip";
    let auth = signed_request(&account.key, "PUT", path, Some(1), now());
    let body: Json = bank
        .http
        .put(bank.url(path))
        .header("Authorization", format!("Alias {auth}"))
        .body(vec![1])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["reexports"], json!([]));

    // Revoke: a newer revoked grant, stored; the transfer carries it.
    let revocation = revoked(&account.key, &contract, now() + 10.0);
    assert!(
        agent
            .get("/dashboard")
            .await
            .1
            .contains("class=\"danger revoke\""),
        "a withdraw button"
    );
    let (status, _) = agent
        .post_json("/web/grants", json!({"grant": revocation}), false)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "CSRF needed");
    let (status, body) = agent
        .post_json("/web/grants", json!({"grant": revocation}), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked"], true);
    assert_eq!(body["stored"], true);
    let t = bank.app.state.transfer(&hash).await.unwrap().unwrap();
    assert!(t.revoked);
    assert_eq!(t.generation, 3);
    let (_, page, _) = agent.get("/dashboard").await;
    assert!(page.contains("<strong>Withdrawn</strong>"));
    assert!(
        page.contains("Fresh transfer after a new export") && page.contains("You withdrew"),
        "history"
    );
    // Someone else's revocation through this session: refused.
    let foreign = revoked(&user_key(63), &contract, now() + 20.0);
    let (status, _) = agent
        .post_json("/web/grants", json!({"grant": foreign}), true)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    bank.cleanup().await;
}

fn contract_named(name: &str, domain: &str) -> Value {
    contract(name, domain)
}

#[actix_web::test]
async fn refused_requests_never_redirect() {
    let bank = Bank::start().await;
    let mut agent = Agent::new(&bank);
    signup(&mut agent, &Account::new("bob", 64)).await;
    let contract = contract("Test client", CLIENT_DOMAIN);
    let token = to_token(&contract);

    // A forged contract (the client's name changed after signing).
    let forged = token.replace("Test client", "Trusted bank");
    let (status, page, location) = agent
        .get(&format!("/request?contract={}", enc(&forged)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(location.is_none());
    assert!(page.contains("does not verify"), "{page}");

    // A redirect outside the client's domain.
    for redirect in [
        "http://evil.example/cb",
        "http://127.0.0.1:10/alias/cb/",
        "https://127.0.0.1:9/alias/cb/",
        "http://127.0.0.1:9@evil.example/",
    ] {
        let (status, page, location) = agent
            .get(&format!(
                "/request?contract={}&redirect={}",
                enc(&token),
                enc(redirect)
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{redirect}");
        assert!(location.is_none());
        assert!(
            page.contains("within the client") || page.contains("absolute"),
            "{page}"
        );
    }
    // Within the domain: accepted, and used.
    let (status, page, _) = agent
        .get(&format!(
            "/request?contract={}&redirect={}",
            enc(&token),
            enc("http://127.0.0.1:9/back?x=1")
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let rid = attr(&page, "id=\"request-id\" value=\"");
    let csrf = agent.csrf.clone();
    let (_, location) = agent
        .post_form(&format!("/request/{rid}/deny"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        location.as_deref(),
        Some("http://127.0.0.1:9/back?x=1&error=access_denied")
    );

    // A push destination the data bank refuses, no contract at all, an unknown client id.
    let mut bad = contract.clone();
    if let Value::Dict(d) = &mut bad {
        d.insert(
            "network",
            Value::Dict(protocol::anychain::Dict::new().with("pushEndpoint", "@evil.example/")),
        );
    }
    for path in [
        format!("/request?contract={}", enc(&to_token(&bad))),
        "/request".to_owned(),
        "/request?client_id=nope".to_owned(),
        "/request?contract=%7B".to_owned(),
    ] {
        let (status, _, location) = agent.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(location.is_none());
    }
    // The pages cannot be framed.
    let resp = reqwest::get(bank.url("/login")).await.unwrap();
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    // Open redirect through next=: only local paths.
    let (status, _, location) = {
        let mut fresh = Agent::new(&bank);
        signup(&mut fresh, &Account::new("bob2", 65)).await;
        fresh.get("/login?next=//evil.example/").await
    };
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/dashboard"));
    bank.cleanup().await;
}

#[actix_web::test]
async fn login_security() {
    let bank = Bank::start().await;
    let account = Account::new("carol", 66);
    {
        let mut agent = Agent::new(&bank);
        signup(&mut agent, &account).await;
        // The same name, or the same key, cannot sign up twice.
        let mut again = Agent::new(&bank);
        let (status, begun) = {
            again.get("/signup").await;
            again
                .post_json("/web/signup/begin", json!({"username": "carol"}), true)
                .await
        };
        assert_eq!(status, StatusCode::OK);
        let answer = account.answer(begun["challenge"].as_str().unwrap());
        let (status, body) = again
            .post_json(
                "/web/signup",
                json!({"record": account.record(), "bind": bind(&account.key, ORIGIN), "login": answer}),
                true,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    let mut agent = Agent::new(&bank);
    let (status, _, _) = agent.get("/login").await;
    assert_eq!(status, StatusCode::OK);
    let anonymous = agent.cookie.clone().unwrap();

    // Salt: the account's; for unknown names a fake one, stable, per name.
    let (_, body, _) = agent.get("/web/account/params?username=carol").await;
    let body: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(body["salt"], b64u_encode(&account.salt));
    let fake = |b: String| serde_json::from_str::<Json>(&b).unwrap()["salt"].clone();
    let a1 = fake(agent.get("/web/account/params?username=nobody").await.1);
    let a2 = fake(agent.get("/web/account/params?username=nobody").await.1);
    let b1 = fake(agent.get("/web/account/params?username=nobody2").await.1);
    assert_eq!(a1, a2);
    assert_ne!(a1, b1);
    assert_eq!(b64u_decode(a1.as_str().unwrap()).unwrap().len(), 16);

    // Missing CSRF token on login: refused.
    let (status, body) = agent
        .post_json(
            "/web/login/begin",
            json!({"username": "carol", "verifier": b64u_encode(&account.verifier)}),
            false,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("csrf"))
    );

    // Wrong password, unknown user: the same refusal.
    let wrong = Account {
        verifier: vec![0; 32],
        ..Account::new("carol", 66)
    };
    let (status, body) = login(&mut agent, &wrong).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("wrong_password"))
    );
    let (status, body2) = login(&mut agent, &Account::new("nobody", 67)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["reason"], body2["reason"]);

    // A login answer signed by another key than the account's: refused.
    let (_, begun) = agent
        .post_json(
            "/web/login/begin",
            json!({"username": "carol", "verifier": b64u_encode(&account.verifier)}),
            true,
        )
        .await;
    let impostor = Account {
        key: user_key(68),
        ..Account::new("carol", 66)
    };
    let answer = impostor.answer(begun["challenge"].as_str().unwrap());
    let (status, _) = agent
        .post_json(
            "/web/login/finish",
            json!({"username": "carol", "verifier": b64u_encode(&account.verifier), "login": answer}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A good login; the session id changes (no fixation).
    let (_, begun) = agent
        .post_json(
            "/web/login/begin",
            json!({"username": "carol", "verifier": b64u_encode(&account.verifier)}),
            true,
        )
        .await;
    let answer = account.answer(begun["challenge"].as_str().unwrap());
    let finish =
        json!({"username": "carol", "verifier": b64u_encode(&account.verifier), "login": answer});
    let (status, body) = agent
        .post_json("/web/login/finish", finish.clone(), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    agent.csrf = body["csrf"].as_str().unwrap().to_owned();
    let logged = agent.cookie.clone().unwrap();
    assert_ne!(logged, anonymous, "a new session id at login");
    let (status, _, _) = agent.get("/dashboard").await;
    assert_eq!(status, StatusCode::OK);
    // The id planted before login is not logged in.
    let mut planted = Agent::new(&bank);
    planted.cookie = Some(anonymous.clone());
    let (status, _, location) = planted.get("/dashboard").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/login?next=/dashboard"));
    // A forged cookie is ignored.
    let mut forged = Agent::new(&bank);
    forged.cookie = Some(format!("x{}", &logged[1..]));
    let (status, _, _) = forged.get("/dashboard").await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // The same login answer replayed: the challenge was used.
    let mut replay = Agent::new(&bank);
    replay.get("/login").await;
    let (status, body) = replay.post_json("/web/login/finish", finish, true).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("login_refused")),
        "{body}"
    );

    // The session's own CSRF token, not another session's.
    let (status, _) = {
        let mut other = Agent::new(&bank);
        other.get("/login").await;
        other.csrf = agent.csrf.clone();
        other
            .post_json("/web/signup/begin", json!({"username": "dave"}), true)
            .await
    };
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Logout ends the session; the old cookie no longer works.
    let csrf = agent.csrf.clone();
    let (status, location) = agent.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/login?logged_out=1"));
    let mut old = Agent::new(&bank);
    old.cookie = Some(logged);
    let (status, _, _) = old.get("/dashboard").await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Throttle: at most 10 failures per (address, username) in 5 minutes.
    agent.get("/login").await;
    let mut limited = false;
    for _ in 0..12 {
        let (status, _) = login(&mut agent, &wrong).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert!(limited, "login attempts are rate-limited");
    bank.cleanup().await;
}

#[actix_web::test]
async fn static_scripts_are_served_with_their_types() {
    let bank = Bank::start_with(&[("ALIAS_WEB_DIR", "../web")]).await;
    let resp = reqwest::get(bank.url("/static/src/anychain.js"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(resp.text().await.unwrap().contains("export function fold"));
    let resp = reqwest::get(bank.url("/static/app/style.css"))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/css; charset=utf-8");
    for path in [
        "/static/package.json",
        "/static/src/../package.json",
        "/static/src/%2e%2e/package.json",
        "/static/node_modules/.package-lock.json",
    ] {
        let resp = reqwest::get(bank.url(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    bank.cleanup().await;
}

/// `v` with the value at `path` replaced by its hash (same fold: every
/// signature still holds).
fn hash_at(v: &Value, path: &[&str]) -> Value {
    let Some((first, rest)) = path.split_first() else {
        return protocol::anychain::fold(v).unwrap().into_value();
    };
    match v {
        Value::Dict(d) => {
            let mut out = protocol::anychain::Dict::new();
            for (k, c) in d.iter() {
                out.insert(
                    k,
                    if k == *first {
                        hash_at(c, rest)
                    } else {
                        c.clone()
                    },
                );
            }
            Value::Dict(out)
        }
        Value::List(items) => Value::List(
            items
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i.to_string() == *first {
                        hash_at(c, rest)
                    } else {
                        c.clone()
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Signed in clear on every route of the web flow that takes a document:
/// the consent page (a contract), agreeing (a grant and a bind), the
/// dashboard's grants, `POST /alias/grants` and `POST /alias/bind`. A
/// value replaced by its hash is refused with 400 and `hashed_value`
/// naming the path; nothing is stored.
#[actix_web::test]
async fn hashed_values_are_refused_on_every_web_route() {
    let bank = Bank::start().await;
    let mut agent = Agent::new(&bank);
    let account = Account::new("carol", 66);
    signup(&mut agent, &account).await;
    let contract = contract("Test client", CLIENT_DOMAIN);
    let hash = protocol::anychain::fold(&contract).unwrap().to_b64();

    // The consent page refuses a contract with a hashed scope.
    let hidden = hash_at(&contract, &["base", "consent", "0", "scopes", "0"]);
    let (status, page, location) = agent
        .get(&format!("/request?contract={}", enc(&to_token(&hidden))))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(location.is_none());
    assert!(
        page.contains("hashed_value") && page.contains("contract.base.consent.0.scopes.0"),
        "{page}"
    );

    // Agreeing with a declined cell hashed: refused, nothing stored.
    let (status, page, _) = agent
        .get(&format!("/request?contract={}", enc(&to_token(&contract))))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let rid = attr(&page, "id=\"request-id\" value=\"");
    let body = grant_body(&contract, vec![vec![false]], vec![]).unwrap();
    let genuine = sign(&account.key, body, now()).unwrap();
    let forged = to_token(&hash_at(&genuine, &["body", "base", "consent", "0", "0"]));
    let bind_token = bind(&account.key, ORIGIN);
    let (status, body) = agent
        .post_json(
            &format!("/request/{rid}/agree"),
            json!({"grant": forged, "bind": bind_token}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "hashed_value");
    assert_eq!(body["path"], "grant.body.base.consent.0.0");
    // A hashed bind origin next to a clear grant: refused too.
    let hashed_bind = {
        let b: Value = protocol::anychain::from_json_str(&bind_token, &Default::default()).unwrap();
        to_token(&hash_at(&b, &["body", "origin"]))
    };
    let (status, body) = agent
        .post_json(
            &format!("/request/{rid}/agree"),
            json!({"grant": to_token(&genuine), "bind": hashed_bind}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        (body["code"].as_str(), body["path"].as_str()),
        (Some("hashed_value"), Some("bind.body.origin"))
    );
    // The dashboard's grant route and the API's.
    let (status, body) = agent
        .post_json("/web/grants", json!({"grant": forged}), true)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "hashed_value");
    // A revocation with `revoked` hashed (it reads as revoked): refused.
    let revocation: Value = protocol::anychain::from_json_str(
        &revoked(&account.key, &contract, now()),
        &Default::default(),
    )
    .unwrap();
    for (route, token) in [
        ("/alias/grants", forged.clone()),
        (
            "/alias/grants",
            to_token(&hash_at(&revocation, &["body", "revoked"])),
        ),
        ("/alias/bind", hashed_bind.clone()),
    ] {
        let key = if route == "/alias/bind" {
            "bind"
        } else {
            "grant"
        };
        let resp = bank
            .http
            .post(bank.url(route))
            .json(&json!({ key: token }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{route}");
        let body: Json = resp.json().await.unwrap();
        assert_eq!(body["code"], "hashed_value", "{route}: {body}");
    }
    assert!(bank
        .app
        .state
        .stored_grant(&account.pk(), &hash)
        .await
        .unwrap()
        .is_none());
    // The clear grant is still accepted for the same request.
    let (status, body) = agent
        .post_json(
            &format!("/request/{rid}/agree"),
            json!({"grant": to_token(&genuine), "bind": bind_token}),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    bank.cleanup().await;
}

#[actix_web::test]
async fn a_transfer_is_seen_with_its_users_session_only() {
    let bank = Bank::start().await;
    let alice = Account::new("alice-sees", 71);
    let bob = Account::new("bob-sees", 72);
    let mut alice_agent = Agent::new(&bank);
    let mut bob_agent = Agent::new(&bank);
    signup(&mut alice_agent, &alice).await;
    signup(&mut bob_agent, &bob).await;
    let token = grant(
        &alice.key,
        &contract("Session client", CLIENT_DOMAIN),
        now(),
    );
    let resp = bank
        .http
        .post(bank.url("/alias/process"))
        .header("Prefer", "respond-async")
        .json(&json!({ "grant": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let body: Json = resp.json().await.unwrap();
    let id = body["transfer"]["id"].as_str().unwrap().to_owned();
    let path = format!("/alias/transfers/{id}");

    let (status, text, _) = alice_agent.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains(&alice.pk()), "{text}");
    let (status, text, _) = bob_agent.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(!text.contains(&alice.pk()), "{text}");
    let (status, _, _) = bob_agent.get(&format!("{path}/events")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A forged cookie is nobody.
    let mut forged = Agent::new(&bank);
    forged.cookie = Some("x".repeat(60));
    let (status, _, _) = forged.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // After logout, the session sees nothing.
    let csrf = alice_agent.csrf.clone();
    let _ = alice_agent
        .post_form("/logout", &[("csrf", csrf.as_str())])
        .await;
    let (status, _, _) = alice_agent.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    bank.cleanup().await;
}

#[actix_web::test]
async fn forms_cannot_send_secrets_before_their_script() {
    let bank = Bank::start().await;
    let mut agent = Agent::new(&bank);
    for path in ["/login", "/signup"] {
        let (status, page, _) = agent.get(path).await;
        assert_eq!(status, StatusCode::OK);
        // No field of the form has a name (nothing to submit), the form
        // posts (never a GET with the fields in the URL), and its button
        // waits for the script.
        let form = &page[page.find("<form id=").unwrap()..];
        let form = &form[..form.find("</form>").unwrap()];
        assert!(form.contains("method=\"post\""), "{form}");
        assert!(!form.contains(" name="), "named fields: {form}");
        assert!(form.contains("type=\"submit\""), "{form}");
        assert!(form.contains(" disabled>"), "{form}");
        // Submitted anyway (the script never ran): refused, nothing kept.
        let resp = agent
            .with_cookie(
                agent
                    .http
                    .post(format!("{}{path}?next=%2Fdashboard", agent.base)),
            )
            .form(&[("username", "alice"), ("password", "secret words")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let page = resp.text().await.unwrap();
        assert!(page.contains("Nothing was sent"), "{page}");
        assert!(page.contains("role=\"alert\""));
        assert!(!page.contains("secret words"));
    }
    // The upload form of the dashboard and the consent page's Agree: the
    // same (checked for the consent page in the flow above).
    let (status, page, _) = agent.get("/").await;
    assert_eq!(status, StatusCode::OK, "a landing page, not a redirect");
    assert!(page.contains("Create an account") && page.contains("download everything they hold"));
    bank.cleanup().await;
}

#[actix_web::test]
async fn requests_say_who_asks_before_login_and_for_which_account() {
    let bank = Bank::start().await;
    let mut agent = Agent::new(&bank);
    let token = to_token(&contract("Acme", CLIENT_DOMAIN));
    let request = format!("/request?contract={}&username=alice", enc(&token));
    let (status, _, location) = agent.get(&request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page, _) = agent.get(&location.unwrap()).await;
    assert!(
        page.contains("id=\"request-context\"")
            && page.contains("“Acme”")
            && page.contains("Google Takeout"),
        "{page}"
    );
    // A forged request gives no context (nothing unverified is echoed).
    let (_, page, _) = agent
        .get(&format!("/login?next={}", enc("/request?contract=%7B%7D")))
        .await;
    assert!(!page.contains("id=\"request-context\""));
    // Logged in as bob, a request for alice says so.
    let bob = Account::new("bob", 71);
    signup(&mut agent, &bob).await;
    let (status, _, location) = agent.get(&request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, page, _) = agent.get(&location.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("for the account “alice”") && page.contains("logged in as “bob”"),
        "{page}"
    );
    bank.cleanup().await;
}

#[actix_web::test]
async fn consent_page_summary_and_warnings() {
    let bank = Bank::start().await;
    let mut agent = Agent::new(&bank);
    let account = Account::new("carol", 72);
    signup(&mut agent, &account).await;
    // Everything of Google, pushed over plain http, kept with no limit, and
    // a Facebook scope on legitimate interest (no Facebook dump here).
    use protocol::anychain::Dict;
    let scope = |provider: &str, path: &str| -> Value {
        Dict::new()
            .with("provider", provider)
            .with("path", path)
            .into()
    };
    let group = |s: Value| -> Value { Dict::new().with("scopes", Value::List(vec![s])).into() };
    let mut c = contract("Broad", CLIENT_DOMAIN);
    if let Value::Dict(d) = &mut c {
        d.insert("legal", Dict::new().with("usage", "ads").into());
        let base = Dict::new()
            .with("contractual", group(scope("google", "*")))
            .with(
                "legitimate",
                Dict::new().with(
                    "groups",
                    Value::List(vec![group(scope("facebook", "posts"))]),
                ),
            );
        d.insert("base", base.into());
        d.insert("network", Dict::new().with("scheme", "http").into());
    }
    let (status, page, _) = agent
        .get(&format!("/request?contract={}", enc(&to_token(&c))))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for kind in [
        "all-data",
        "plain-http",
        "indefinite",
        "legitimate",
        "no-dump",
    ] {
        assert!(page.contains(&format!("data-kind=\"{kind}\"")), "{kind}");
    }
    assert!(page.contains("asks to receive everything of your Google Takeout"));
    assert!(page.contains("id=\"object-0-0\""), "an objection switch");
    assert!(page.contains("unverified"));
    // Agree and Deny in one decision row, Agree waiting for the script.
    let decision = &page[page.find("id=\"decision\"").unwrap()..];
    let decision = &decision[..decision.find("</div>").unwrap()];
    assert!(decision.contains("id=\"agree\" disabled") && decision.contains("id=\"deny\""));
    bank.cleanup().await;
}

#[actix_web::test]
async fn a_failed_transfer_can_be_retried() {
    let bank = Bank::start().await;
    let mut agent = Agent::new(&bank);
    let account = Account::new("dave", 73);
    signup(&mut agent, &account).await;
    let c = contract("Flaky", CLIENT_DOMAIN);
    let grant = crate::fixtures::grant(&account.key, &c, now());
    let (status, body) = agent
        .post_json("/web/grants", json!({"grant": grant}), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hash = body["contract"].as_str().unwrap().to_owned();
    // Nothing failed yet: no transfer to retry is started from nothing,
    // a running one is not retried.
    let (status, body) = agent
        .post_json("/web/transfers/retry", json!({"contract": hash}), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["generation"], 1);
    let (status, body) = agent
        .post_json("/web/transfers/retry", json!({"contract": hash}), true)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_failed"))
    );
    // Failed (here: stopped): Retry starts a new run; the page offers it.
    bank.app
        .state
        .cancel(&hash, "the client kept failing")
        .await
        .unwrap();
    let (_, page, _) = agent.get("/dashboard").await;
    assert!(page.contains("data-state=\"cancelled\""), "{page}");
    let (status, _) = agent
        .post_json("/web/transfers/retry", json!({"contract": hash}), false)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "CSRF needed");
    let (status, body) = agent
        .post_json("/web/transfers/retry", json!({"contract": hash}), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["generation"], 2);
    // Another user's contract: not found.
    let mut other = Agent::new(&bank);
    signup(&mut other, &Account::new("erin", 74)).await;
    let (status, _) = other
        .post_json("/web/transfers/retry", json!({"contract": hash}), true)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    bank.cleanup().await;
}

#[actix_web::test]
async fn static_files_have_validators_and_are_compressed() {
    let bank = Bank::start_with(&[("ALIAS_WEB_DIR", "../web")]).await;
    let http = reqwest::Client::new();
    let url = bank.url("/static/src/anychain.js");
    let plain = http.get(&url).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    let etag = plain.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(plain.headers()["cache-control"], "no-cache");
    let plain = plain.bytes().await.unwrap();
    let again = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let gz = http
        .get(&url)
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert_eq!(gz.headers()["vary"], "Accept-Encoding");
    let gz = gz.bytes().await.unwrap();
    assert!(
        gz.len() * 2 < plain.len(),
        "{} vs {}",
        gz.len(),
        plain.len()
    );
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    assert_eq!(text, plain);
    let refused = http
        .get(&url)
        .header("accept-encoding", "gzip;q=0")
        .send()
        .await
        .unwrap();
    assert!(refused.headers().get("content-encoding").is_none());
    bank.cleanup().await;
}

#[actix_web::test]
async fn password_change_keeps_the_key() {
    let bank = Bank::start().await;
    let mut agent = Agent::new(&bank);
    let old = Account::new("frank", 75);
    signup(&mut agent, &old).await;
    // The new password gives a new salt, verifier and box; the key stays.
    let mut new = Account::new("frank", 76);
    new.key = old.key.clone();
    let begin = |v: &Account| json!({"verifier": b64u_encode(&v.verifier)});
    // The current password is needed.
    let (status, _) = agent
        .post_json("/web/account/password/begin", begin(&new), true)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, begun) = agent
        .post_json("/web/account/password/begin", begin(&old), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{begun}");
    let challenge = begun["challenge"].as_str().unwrap().to_owned();
    // A record with another key: refused (the challenge is kept).
    let stranger = Account::new("frank", 77);
    let (status, body) = agent
        .post_json(
            "/web/account/password",
            json!({"verifier": b64u_encode(&old.verifier), "record": stranger.record(), "login": stranger.answer(&challenge)}),
            true,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_yours"))
    );
    // Without CSRF: refused.
    let change = json!({"verifier": b64u_encode(&old.verifier), "record": new.record(), "login": new.answer(&challenge)});
    let (status, _) = agent
        .post_json("/web/account/password", change.clone(), false)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = agent
        .post_json("/web/account/password", change.clone(), true)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The challenge was single-use.
    let (status, _) = agent.post_json("/web/account/password", change, true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Logging in: the old password no longer works, the new one does, with
    // the same key.
    let mut fresh = Agent::new(&bank);
    fresh.get("/login").await;
    let (status, _) = login(&mut fresh, &old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = login(&mut fresh, &new).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Logged out: no password change.
    let mut nobody = Agent::new(&bank);
    nobody.get("/login").await;
    let (status, _) = nobody
        .post_json("/web/account/password/begin", begin(&new), true)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    bank.cleanup().await;
}
