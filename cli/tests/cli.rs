//! `aliasctl` as users run it: the binary, real files, real exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../protocol/tests/data/");

fn aliasctl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aliasctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("aliasctl starts");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("aliasctl runs")
}

fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = aliasctl(args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim_end()
        .to_owned()
}

fn examples() -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{VECTORS}protocol-examples.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn keygen_sign_fold_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("user.key");
    let key = key.to_str().unwrap();
    let pk = ok(&["keygen", "--out", key], None);
    assert_eq!(pk.len(), 43);
    assert_eq!(ok(&["pubkey", "--key", key], None), pk);
    // Refuses to overwrite a key.
    assert!(!aliasctl(&["keygen", "--out", key], None).status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let body = write(
        dir.path(),
        "body.json",
        r#"{"type":"alias.bindAuthz","origin":"https://bank.example"}"#,
    );
    let signed = ok(
        &["sign", "--key", key, "--date", "1574158520000", &body],
        None,
    );
    assert!(signed.contains(&pk));
    assert!(signed.contains("\"date\":1574158520000"));
    let signed_file = write(dir.path(), "signed.json", &signed);
    assert_eq!(ok(&["verify", &signed_file], None), "ok");
    assert_eq!(ok(&["verify", "-"], Some(&signed)), "ok");
    let fold = ok(&["fold", &signed_file], None);
    assert_eq!(fold.len(), 86);
    assert_eq!(ok(&["fold", "-"], Some(&signed)), fold);

    // Tampering: exit 1 and the reference's reason on stdout.
    let tampered = signed.replace("bank.example", "evil.example");
    let out = aliasctl(&["verify", "-"], Some(&tampered));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "invalid chain: bad signature or forged document"
    );
    let out = aliasctl(&["verify", "-"], Some(r#"{"x":{"__bytes":"AA=="}}"#));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("__bytes"));
}

#[test]
fn sign_is_deterministic_with_a_given_seed_and_date() {
    // Case "sig dict body" of the vectors, re-signed through the CLI.
    let dir = tempfile::tempdir().unwrap();
    let key = write(
        dir.path(),
        "k",
        "oAO3EzdtNUHJRpigD7JqzSblXlRLNYnuHoSb7VxaEQU\n",
    );
    let body = write(dir.path(), "b.json", r#"{"msg": "hello", "n": 1}"#);
    let signed = ok(
        &["sign", "--key", &key, "--date", "1573000000000", &body],
        None,
    );
    assert_eq!(
        signed,
        r#"{"type":"anychain.signature","date":1573000000000,"signer":{"__bytes":"bTdrxa8Z-weXObFluTm5dX9FSXRQnxOwcTNNmrx43RQ"},"body":{"msg":"hello","n":1},"signature":{"__bytes":"Dfc-ECfW9BQc0Eiz7bfPnnpCySna8nJcqsERBKCJ_5fA8los2XrylOtWvXrmuSTCReXs-ASZhRHsahuH8oUYAA"}}"#
    );
}

#[test]
fn grant_commands_on_token_t() {
    let ex = examples();
    let token = ex["grant_token"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "grant.json", token);
    assert_eq!(
        ok(&["grant", "hash", &file], None),
        ex["grant_hash"].as_str().unwrap()
    );
    assert_eq!(
        ok(&["grant", "contract-hash", &file], None),
        ex["grant_contract_hash"].as_str().unwrap()
    );
    assert_eq!(
        ok(&["grant", "push-url", &file], None),
        ex["push_url"].as_str().unwrap()
    );
    let scopes: serde_json::Value =
        serde_json::from_str(&ok(&["grant", "scopes", &file], None)).unwrap();
    assert_eq!(scopes, ex["grant_scopes"]);
    let inspect = ok(&["grant", "inspect", &file], None);
    assert!(
        inspect.contains("client:        Demo (client.example)"),
        "{inspect}"
    );
    assert!(inspect.contains("google.my_activity.search"), "{inspect}");

    // Token forms: encode is the exact wire text; decode reads raw or URL forms.
    let pretty = ok(&["token", "decode", token], None);
    assert!(pretty.contains('\n'));
    let pretty_file = write(dir.path(), "pretty.json", &pretty);
    assert_eq!(ok(&["token", "encode", &pretty_file], None), token);
    let url = ok(&["token", "encode", "--url", &pretty_file], None);
    assert!(url.starts_with("%7B%22type%22"));
    assert_eq!(ok(&["token", "decode", &url], None), pretty);

    // Policy on top of the reference: T is years old, fine; far-future clock skew is not.
    assert_eq!(ok(&["verify", "--policy", &file], None), "ok");
    let out = aliasctl(
        &["verify", "--policy", "--now", "1574000000000", &file],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("in the future"));
}

#[test]
fn grant_new_signs_consent_and_revocation() {
    let ex = examples();
    let token = ex["grant_token"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let user = write(
        dir.path(),
        "user.key",
        "0202020202020202020202020202020202020202020202020202020202020202",
    );
    // The contract of T.
    let grant: serde_json::Value = serde_json::from_str(token).unwrap();
    let contract = write(
        dir.path(),
        "contract.json",
        &grant["body"]["contract"].to_string(),
    );
    let made = ok(
        &[
            "grant",
            "new",
            "--key",
            &user,
            "--consent",
            "1",
            "--date",
            "1574158520000",
            &contract,
        ],
        None,
    );
    assert_eq!(made, token, "same key, date and consent give token T");
    let declined = ok(
        &["grant", "new", "--key", &user, "--consent", "0", &contract],
        None,
    );
    let scopes: serde_json::Value =
        serde_json::from_str(&ok(&["grant", "scopes", "-"], Some(&declined))).unwrap();
    assert_eq!(scopes.as_array().unwrap().len(), 1);
    let revoked = ok(
        &["grant", "new", "--key", &user, "--revoked", &contract],
        None,
    );
    assert_eq!(ok(&["grant", "scopes", "-"], Some(&revoked)), "[]");
    // A consent matrix that does not fit the contract is refused.
    let out = aliasctl(
        &[
            "grant",
            "new",
            "--key",
            &user,
            "--consent",
            "1,1",
            &contract,
        ],
        None,
    );
    assert!(!out.status.success());
}

#[test]
fn scope_command_reads_both_forms() {
    let out = ok(
        &["scope", "google.my_activity.search[title=x].{title,time}"],
        None,
    );
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("google.my_activity.search[title=x].{title,time}")
    );
    assert!(lines
        .next()
        .unwrap()
        .contains("\"predicates\":[[\"=\",\"title\",\"x\"]]"));
    assert!(!aliasctl(&["scope", "../etc.passwd"], None).status.success());
}
