//! Accounts: the login throttle and sessions, forms that cannot send
//! secrets before their script, and the password change.

use super::*;

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
