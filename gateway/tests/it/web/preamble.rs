//! The preamble every page request shares (one extractor): the CSRF header
//! first (403 `csrf`), then a logged-in user (401 `not_logged_in`), then
//! the JSON body (400 `bad_body`), each in the error envelope.

use super::*;

/// The POST routes of a logged-in user, with a body each accepts in shape.
const USER_POSTS: &[&str] = &[
    "/web/grants",
    "/web/reexport",
    "/web/transfers/retry",
    "/web/account/password/begin",
    "/web/account/password",
];

async fn raw_post(agent: &Agent, path: &str, body: &str) -> (StatusCode, Json) {
    let resp = agent
        .with_cookie(agent.http.post(format!("{}{path}", agent.base)))
        .header("content-type", "application/json")
        .header("x-csrf-token", &agent.csrf)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap_or(Json::Null))
}

fn code(body: &Json) -> Option<&str> {
    body["code"].as_str()
}

#[actix_web::test]
async fn the_preamble_refuses_in_order_with_the_envelope() {
    let bank = Bank::start().await;
    let mut agent = Agent::new(&bank);
    agent.get("/login").await;
    for path in USER_POSTS {
        let (status, body) = agent.post_json(path, json!({}), false).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, Some("csrf")),
            "{path}"
        );
        assert_eq!(body["status"], "error", "{path}");
        let (status, body) = agent.post_json(path, json!({}), true).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, Some("not_logged_in")),
            "{path}"
        );
    }
    for path in ["/web/me", "/web/transfers"] {
        let (status, body, _) = agent.get(path).await;
        let body: Json = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, Some("not_logged_in")),
            "{path}"
        );
    }
    // Anyone may start a login, but only with the page's token and a body
    // of the right shape.
    let (status, body) = raw_post(&agent, "/web/login/begin", "{").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, Some("bad_body"))
    );

    let account = Account::new("preamble", 71);
    signup(&mut agent, &account).await;
    for path in USER_POSTS {
        let (status, body) = raw_post(&agent, path, "{not json").await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, Some("bad_body")),
            "{path}"
        );
        let (status, body) = raw_post(&agent, path, r#"{"unknown": 1}"#).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, Some("bad_body")),
            "{path}"
        );
    }
    let (status, body, _) = agent.get("/web/me").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    bank.cleanup().await;
}
