//! The static scripts and styles: types, validators, compression.

use super::*;

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
