//! Attacks on consent integrity ("signed in clear"): anychain lets any value
//! be replaced by its hash without changing the fold, so the user's
//! signature still verifies. A client holding the user's grant replaces a
//! declined (`false`) consent or legitimate cell by `{"__hash": fold(false)}`,
//! which JavaScript truthiness reads as granted; or hides another value the
//! bank reads (push endpoint, a scope, the date, the client's name) behind
//! its hash; or shows the user a client declaration it signed with another
//! key than the one the declaration names. Each is refused by the gateway
//! with 400 and a stable code naming the path, before any scope is
//! computed: no transfer, no stored grant, nothing sent to the client.

use e2e::*;
use protocol::anychain::{fold, sign, to_token, Dict, SigningKey, Value};
use runtime::mq::{Queue, Route};
use sink::Faults;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// A contract of `client` (a signed declaration): contractual search
/// history, one consent group (YouTube history) and one legitimate group
/// (photos), pushed over plain http.
fn contract_of(client: Value) -> Value {
    contract_doc(client)
        .contractual(group(&["my_activity.search"], &["research"]))
        .consent(group(&["youtube.watch_history"], &["research"]))
        .legitimate(
            Some("fraud prevention"),
            vec![group(&["photos"], &["research"])],
        )
        .push_endpoint("/alias/push/")
        .build()
}

/// A client (an `alias-sink`) whose contract has a consent and a
/// legitimate group, declared and signed with the client key of `seed`.
fn consent_client(seed: u8) -> Client {
    Client::with_contract(seed, Faults::none(), |domain| {
        contract_of(client_decl_naming(
            "Honest client",
            domain,
            &key(seed),
            &key(seed),
        ))
    })
}

/// The user's grant of `contract` declining every consent and legitimate
/// scope (the signature object).
fn declining_grant(user: &SigningKey, contract: &Value) -> Value {
    grant_signed(user, contract, vec![vec![false]], vec![vec![false]], now())
}

/// `v` with the value at `path` replaced by `f(value)`.
fn edit(v: &Value, path: &[&str], f: &dyn Fn(&Value) -> Value) -> Value {
    let Some((first, rest)) = path.split_first() else {
        return f(v);
    };
    match v {
        Value::Dict(d) => {
            let mut out = Dict::new();
            for (k, c) in d.iter() {
                out.insert(
                    k,
                    if k == *first {
                        edit(c, rest, f)
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
                        edit(c, rest, f)
                    } else {
                        c.clone()
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The value replaced by its hash: the fold, hence the signature, holds.
fn hashed(v: &Value) -> Value {
    fold(v).unwrap().into_value()
}

/// Checks that nothing happened for `user` and `client`: no transfer, no
/// stored grant, no job queued, no request at the client.
async fn assert_untouched(bank: &Bank, client: &Client, user: &SigningKey) {
    assert!(bank.app.state.transfer(&client.id).await.unwrap().is_none());
    assert!(bank
        .app
        .state
        .stored_grant(&user_pk(user), &client.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        bank.app
            .broker
            .queue_depth(Queue::Work(Route::Process))
            .await
            .unwrap(),
        0
    );
    assert!(
        client.sink.requests().is_empty(),
        "the client received {:?}",
        client.sink.requests()
    );
}

/// Posts `grant` to `/alias/process` (answered at once) and checks the
/// refusal: 400, `code`, and the path named.
async fn assert_refused(bank: &Bank, grant: &Value, code: &str, path: &str) {
    let (status, body) = process_async(&bank.base, &to_token(grant)).await;
    assert_eq!(status, 400, "{path}: {body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["path"], path, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains(path),
        "the reason names the path: {body}"
    );
}

/// Hashed-false cells (consent, then legitimate) are refused; the user's
/// real grant then gives the contractual scope only.
async fn hashed_false_cell(cell: &[&str], path: &str, prefix: &str) {
    let mut bank = Bank::new(prefix, &[]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let u = user(71);
    give_dump(&bank, &u, 256 << 10, 7).await;
    let client = consent_client(31);
    let genuine = declining_grant(&u, &client.contract);
    let forged = edit(&genuine, cell, &hashed);
    assert_eq!(fold(&forged).unwrap(), fold(&genuine).unwrap());
    // Read as the reference reads it, the forged grant gives the declined
    // scope: contractual plus the hashed cell's.
    let read = protocol::alias::Grant::from_token(&to_token(&forged), &Default::default()).unwrap();
    assert_eq!(read.scopes().unwrap().len(), 2);

    assert_refused(&bank, &forged, "hashed_value", path).await;
    let (status, body) = process_sync(&bank.base, &to_token(&forged)).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("hashed_value")));
    assert_untouched(&bank, &client, &u).await;

    // The user's grant as signed: the contractual scope only.
    let (status, body) = process_sync(&bank.base, &to_token(&genuine)).await;
    assert_eq!(status, 200, "{body}");
    let t = wait_terminal(&bank, &client.id, LIMIT).await;
    let files = bank
        .app
        .state
        .files(&client.id, t.generation)
        .await
        .unwrap();
    assert_eq!(
        files.len(),
        1,
        "one archive, the contractual scope: {files:?}"
    );
    assert_delivered(&bank, &client).await;
    bank.cleanup().await;
}

#[actix_web::test]
async fn hashed_false_consent_cell_is_refused_and_pushes_nothing() {
    hashed_false_cell(
        &["body", "base", "consent", "0", "0"],
        "grant.body.base.consent.0.0",
        "acc",
    )
    .await;
}

#[actix_web::test]
async fn hashed_false_legitimate_cell_is_refused_and_pushes_nothing() {
    hashed_false_cell(
        &["body", "base", "legitimate", "0", "0"],
        "grant.body.base.legitimate.0.0",
        "acl",
    )
    .await;
}

/// Consent cells that are not booleans (`1`, `"yes"`) are refused with
/// their own code, even when the user signed them.
#[actix_web::test]
async fn non_boolean_consent_cells_are_refused() {
    let mut bank = Bank::new("acb", &[]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let u = user(72);
    give_dump(&bank, &u, 64 << 10, 8).await;
    let client = consent_client(32);
    let genuine = declining_grant(&u, &client.contract);
    for (cell, path) in [
        (
            ["body", "base", "consent", "0", "0"],
            "grant.body.base.consent.0.0",
        ),
        (
            ["body", "base", "legitimate", "0", "0"],
            "grant.body.base.legitimate.0.0",
        ),
    ] {
        for value in [Value::Number(1.0), Value::from("yes")] {
            let body = edit(&genuine, &cell, &|_| value.clone());
            let signed = sign(&u, body.get("body").unwrap().clone(), now()).unwrap();
            assert_refused(&bank, &signed, "not_boolean", path).await;
        }
    }
    assert_untouched(&bank, &client, &u).await;
    bank.cleanup().await;
}

/// Other values the bank reads, hidden behind their hash: the push
/// endpoint, the scheme, a scope's path, the client's domain and name, the
/// legal terms, the grant's date. Each is refused with the path; some
/// (name, legal terms, date) nothing else would have caught.
#[actix_web::test]
async fn hashes_in_other_read_values_are_refused() {
    let mut bank = Bank::new("aco", &[]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let u = user(73);
    give_dump(&bank, &u, 64 << 10, 9).await;
    let client = consent_client(33);
    let genuine = declining_grant(&u, &client.contract);
    let cases: [&[&str]; 9] = [
        &["body", "contract", "network", "pushEndpoint"],
        &["body", "contract", "network", "scheme"],
        &[
            "body",
            "contract",
            "base",
            "contractual",
            "scopes",
            "0",
            "path",
        ],
        &["body", "contract", "base", "consent", "0", "scopes", "0"],
        &["body", "contract", "client", "body", "domain"],
        &["body", "contract", "client", "body", "name"],
        &["body", "contract", "legal", "usage"],
        &["body", "contract", "base", "legitimate", "reason"],
        &["date"],
    ];
    for path in cases {
        let forged = edit(&genuine, path, &hashed);
        assert_eq!(fold(&forged).unwrap(), fold(&genuine).unwrap());
        let named = format!("grant.{}", path.join("."));
        assert_refused(&bank, &forged, "hashed_value", &named).await;
    }
    // A sealed box in place of the client's name.
    let boxed = edit(
        &genuine,
        &["body", "contract", "client", "body", "name"],
        &|_| Value::Box(vec![9; 80]),
    );
    let boxed = sign(&u, boxed.get("body").unwrap().clone(), now());
    // The client's signature over its declaration no longer holds: refused
    // by the signature check before anything else.
    let (status, _) = process_async(&bank.base, &to_token(&boxed.unwrap())).await;
    assert_eq!(status, 400);
    assert_untouched(&bank, &client, &u).await;
    bank.cleanup().await;
}

/// A declaration naming the honest client's key (and name) but signed by
/// an impostor, with the impostor's own domain: refused through the
/// gateway, for `/alias/process` and for the consent page.
#[actix_web::test]
async fn declaration_signed_by_another_key_than_it_names_is_refused() {
    let mut bank = Bank::new("ack", &[]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let u = user(74);
    give_dump(&bank, &u, 64 << 10, 10).await;
    let honest = key(34);
    let impostor_key = key(35);
    let impostor = Client::with_contract(35, Faults::none(), |domain| {
        contract_of(client_decl_naming(
            "Honest client",
            domain,
            &honest,
            &impostor_key,
        ))
    });
    let domain = impostor.sink.addr().to_string();
    let grant = grant_signed(
        &u,
        &impostor.contract,
        vec![vec![true]],
        vec![vec![true]],
        now(),
    );
    assert_refused(
        &bank,
        &grant,
        "client_key_mismatch",
        "grant.body.contract.client.body.crypto.sign",
    )
    .await;
    // The consent page refuses to show it (before any login).
    let page = reqwest::Client::new()
        .get(format!("{}/request", bank.base))
        .query(&[("contract", to_token(&impostor.contract))])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    let text = page.text().await.unwrap();
    assert!(text.contains("client_key_mismatch"), "{text}");
    assert_untouched(&bank, &impostor, &u).await;
    // Signed by the key it names, the same declaration is accepted.
    let own = contract_of(client_decl_naming(
        "Honest client",
        &domain,
        &impostor_key,
        &impostor_key,
    ));
    let ok = declining_grant(&u, &own);
    let (status, body) = process_async(&bank.base, &to_token(&ok)).await;
    assert_eq!(status, 202, "{body}");
    let id = contract_id(&own);
    let t = wait_terminal(&bank, &id, LIMIT).await;
    assert_eq!(t.state, runtime::state::TransferState::Done, "{t:?}");
    bank.cleanup().await;
}
