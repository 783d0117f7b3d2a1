//! The consent page: signed in clear on every route, who asks before
//! login, the summary and the warnings.

use super::*;

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
    let genuine = signed_grant(&account.key, &contract, vec![vec![false]], vec![], now()).unwrap();
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

/// Each gateway describes scopes with its own catalogs: two gateways in
/// one process, one with a catalog directory that renames Google searches,
/// show the same request differently (the catalog is the gateway's, not
/// the process's: neither start wins over the other).
#[actix_web::test]
async fn each_gateway_describes_with_its_own_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let google = protocol::catalog::EMBEDDED
        .iter()
        .find(|(p, _)| *p == "google")
        .unwrap()
        .1
        .replace(
            "Your Google searches",
            "Searches typed into Google (local catalog)",
        );
    std::fs::write(dir.path().join("google.toml"), google).unwrap();
    let local = Bank::start_with(&[("ALIAS_CATALOG_DIR", dir.path().to_str().unwrap())]).await;
    let plain = Bank::start().await;
    let c = contract("Test client", CLIENT_DOMAIN);
    let mut pages = Vec::new();
    // The plain gateway started last: a process-wide catalog would now be
    // either one for both.
    for (bank, n) in [(&local, 73u8), (&plain, 74u8)] {
        let mut agent = Agent::new(bank);
        signup(&mut agent, &Account::new("cat", n)).await;
        let (status, page, _) = agent
            .get(&format!("/request?contract={}", enc(&to_token(&c))))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages.push(page);
    }
    assert!(pages[0].contains("Searches typed into Google (local catalog)"));
    assert!(!pages[0].contains("Your Google searches"));
    assert!(pages[1].contains("Your Google searches"));
    assert!(!pages[1].contains("(local catalog)"));
    local.cleanup().await;
    plain.cleanup().await;
}
