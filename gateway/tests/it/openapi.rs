//! `/openapi.json` describes the API the gateway really serves: every
//! documented operation is routed, and every API route is documented.

use crate::Bank;
use std::collections::BTreeSet;

fn sample_path(template: &str) -> String {
    template
        .replace("{id}", "no-such-transfer")
        .replace("{provider}", "google")
        .replace("{name}", "takeout.zip")
}

/// Every `$ref` in the document points at something that exists.
fn check_refs(doc: &serde_json::Value, node: &serde_json::Value) {
    match node {
        serde_json::Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                let pointer = r.strip_prefix('#').expect("local reference");
                assert!(doc.pointer(pointer).is_some(), "dangling {r}");
            }
            map.values().for_each(|v| check_refs(doc, v));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v)),
        _ => {}
    }
}

#[actix_web::test]
async fn the_document_matches_the_routes() {
    let bank = Bank::start().await;
    let resp = bank
        .http
        .get(bank.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    check_refs(&doc, &doc);
    let paths = doc["paths"].as_object().unwrap();

    // Documented → routed: no operation falls through to "no such endpoint".
    for (template, item) in paths {
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let url = bank.url(&sample_path(template));
            let req = bank
                .http
                .request(method.to_uppercase().parse().unwrap(), &url);
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            assert!(
                !(status == 404 && body.contains("no such endpoint")),
                "{method} {template} is documented but not routed"
            );
            assert_ne!(status, 405, "{method} {template}: {body}");
        }
    }

    // Routed → documented: every resource of the API's route table.
    let source = include_str!("../../src/lib.rs");
    let routed: BTreeSet<&str> = source
        .split("web::resource(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|p| *p != "/alias")
        .collect();
    assert!(routed.len() >= 10, "{routed:?}");
    for path in routed {
        assert!(
            paths.contains_key(path),
            "{path} is routed but not documented"
        );
    }
    bank.cleanup().await;
}
