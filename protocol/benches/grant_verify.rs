//! Grant validation throughput: decoding and fully verifying a realistic
//! grant token (client declaration, contract with legal terms, grant; two
//! signatures and every validator) beside one bare Ed25519 verification
//! measured in the same run. The ratio is the cost of the protocol layer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::{Signer, Verifier};
use protocol::alias::{AcceptancePolicy, Grant};
use protocol::anychain::{fold, from_json_str, signing_key_from_seed, Limits};

/// The signed grant of the reference vectors ("grant (signed alias.grant)").
fn realistic_token() -> String {
    let text = include_str!("../tests/data/anychain.json");
    let limits = Limits {
        max_bytes: 64 << 20,
        max_depth: 128,
    };
    let file = from_json_str(text, &limits).expect("vectors decode");
    file.get("documents")
        .and_then(|d| d.as_list())
        .and_then(|cases| {
            cases.iter().find(|c| {
                c.get("name").and_then(|n| n.as_str()) == Some("grant (signed alias.grant)")
            })
        })
        .and_then(|c| c.get("token"))
        .and_then(|t| t.as_str())
        .expect("grant token in the vectors")
        .to_owned()
}

fn bench(c: &mut Criterion) {
    let token = realistic_token();
    let limits = Limits::default();
    let mut group = c.benchmark_group("grant_validation");
    group.throughput(Throughput::Elements(1));

    group.bench_function("baseline: ed25519 verify_strict (1 signature)", |b| {
        let key = signing_key_from_seed(&[9; 32]);
        let message = [7u8; 64];
        let signature = key.sign(&message);
        let public = key.verifying_key();
        b.iter(|| public.verify_strict(black_box(&message), black_box(&signature)))
    });

    group.bench_function("baseline: ed25519 verify (1 signature, cofactored)", |b| {
        let key = signing_key_from_seed(&[9; 32]);
        let message = [7u8; 64];
        let signature = key.sign(&message);
        let public = key.verifying_key();
        b.iter(|| public.verify(black_box(&message), black_box(&signature)))
    });

    group.bench_function("grant token: decode + verify (2 signatures)", |b| {
        b.iter(|| Grant::from_token(black_box(&token), &limits).expect("valid"))
    });

    let policy = AcceptancePolicy::default();
    group.bench_function(
        "grant token: decode + verify + policy + scopes + hashes",
        |b| {
            b.iter(|| {
                let grant = Grant::from_token(black_box(&token), &limits).expect("valid");
                policy
                    .check_grant(&grant, 1_600_000_000_000.0)
                    .expect("accepted");
                (
                    grant.scopes().expect("scopes"),
                    grant.contract_hash().expect("hash"),
                )
            })
        },
    );

    let grant = Grant::from_token(&token, &limits).expect("valid");
    group.bench_function("fold of the whole grant", |b| {
        b.iter(|| fold(black_box(grant.value())).expect("folds"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
