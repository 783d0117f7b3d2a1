//! The whole flow of the pages (signup, agree, deny, revoke, re-export)
//! and requests that are refused without ever redirecting.

use super::*;

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
    let grant = signed_grant(&account.key, &contract, vec![vec![false]], vec![], now());
    let grant = to_token(&grant.unwrap());
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
    let grant_on = signed_grant(
        &account.key,
        &contract,
        vec![vec![true]],
        vec![],
        now() + 1.0,
    );
    let grant_on = to_token(&grant_on.unwrap());
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
    let grant_again = signed_grant(
        &account.key,
        &contract,
        vec![vec![true]],
        vec![],
        now() + 4.0,
    );
    let grant_again = to_token(&grant_again.unwrap());
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
