//! Tests of the configuration: defaults, each check, the documented list.

use super::shared::DEFAULT_REDIS_URL;
use super::*;
use crate::state::PrimaryLogin;

#[test]
fn defaults_are_valid() {
    let c = Config::from_pairs(&[]).unwrap();
    assert_eq!(c.namespace, "alias");
    assert_eq!(c.push_id, PushId::Contract);
    assert_eq!(
        c.limits.max_bytes,
        64 << 10,
        "fits real grants, under the reference's 100 KB"
    );
    assert!(c.gateway.trusted_proxies.is_empty());
    assert_eq!(c.quotas, Quotas::DEFAULT);
    assert!(c.storage_url.starts_with("file:///"));
    assert_eq!(c.key("transfer:x"), "alias:transfer:x");
}

#[test]
fn upload_body_settings() {
    let c = Config::from_pairs(&[]).unwrap();
    assert_eq!(c.gateway.body_idle_timeout, Duration::from_secs(30));
    assert_eq!(
        (c.gateway.body_min_rate, c.gateway.body_rate_window),
        (8192, Duration::from_secs(30))
    );
    assert_eq!(
        (c.gateway.uploads_per_key, c.gateway.uploads_per_addr),
        (2, 8)
    );
    let c = Config::from_pairs(&[("ALIAS_BODY_MIN_RATE", "0")]).unwrap();
    assert_eq!(c.gateway.body_min_rate, 0);
    for var in [
        "ALIAS_BODY_IDLE_TIMEOUT_MS",
        "ALIAS_BODY_RATE_WINDOW_MS",
        "ALIAS_UPLOADS_PER_KEY",
        "ALIAS_UPLOADS_PER_ADDR",
    ] {
        let err = Config::from_pairs(&[(var, "0")]).unwrap_err();
        assert!(err.to_string().contains(var), "{err}");
    }
}

#[test]
fn session_settings() {
    let c = Config::from_pairs(&[]).unwrap();
    assert!(c.session_key.is_none());
    assert_eq!(c.web_dir, PathBuf::from("web"));
    assert_eq!(c.session_ttl, Duration::from_secs(3600));
    let hex = "ab".repeat(32);
    let c = Config::from_pairs(&[("ALIAS_SESSION_KEY", hex.as_str())]).unwrap();
    assert_eq!(c.session_key, Some(vec![0xab; 32]));
    let b64 = "A".repeat(43);
    let c = Config::from_pairs(&[("ALIAS_SESSION_KEY", b64.as_str())]).unwrap();
    assert_eq!(c.session_key.map(|k| k.len()), Some(32));
    let err = Config::from_pairs(&[("ALIAS_SESSION_KEY", "abcd")]).unwrap_err();
    assert!(err.to_string().contains("ALIAS_SESSION_KEY"));
    assert!(
        !err.to_string().contains("abcd"),
        "the secret is not echoed"
    );
}

#[test]
fn values_are_checked_with_their_variable() {
    let err = |k: &str, v: &str| Config::from_pairs(&[(k, v)]).unwrap_err().to_string();
    assert!(err("ALIAS_NAMESPACE", "Bad NS").contains("ALIAS_NAMESPACE"));
    assert!(err("ALIAS_PUSH_ALLOW", "10.0.0.0/33").contains("ALIAS_PUSH_ALLOW"));
    assert!(err("ALIAS_PUSH_ID", "both").contains("ALIAS_PUSH_ID"));
    assert!(err("ALIAS_LISTEN", "nowhere").contains("ALIAS_LISTEN"));
    assert!(err("ALIAS_PUBLIC_ORIGIN", "https://bank.example/path").contains("ALIAS_PUBLIC_ORIGIN"));
    assert!(err("ALIAS_REDIS_URL", "http://x").contains("ALIAS_REDIS_URL"));
    assert!(err("ALIAS_STORAGE_URL", "ftp://x").contains("ALIAS_STORAGE_URL"));
    assert!(err("ALIAS_MAX_TOKEN_BYTES", "0").contains("ALIAS_MAX_TOKEN_BYTES"));
    assert!(err("ALIAS_TRUSTED_PROXIES", "10.0.0.0/33").contains("ALIAS_TRUSTED_PROXIES"));
    assert!(err("ALIAS_QUOTA_CONTRACTS", "0").contains("ALIAS_QUOTA_CONTRACTS"));
    assert!(err("ALIAS_QUOTA_GRANT_BYTES", "1000").contains("ALIAS_QUOTA_GRANT_BYTES"));
    assert!(err("ALIAS_PUSH_CHUNK", "67108865").contains("ALIAS_PUSH_CHUNK"));
    let c = Config::from_pairs(&[("ALIAS_PUSH_CHUNK", "67108864")]).unwrap();
    assert_eq!(c.pusher.push_chunk, MAX_PUSH_CHUNK);
    assert!(Config::from_pairs(&[("ALIAS_NOPE", "1")]).is_err());
}

#[test]
fn values_are_parsed() {
    let c = Config::from_pairs(&[
        ("ALIAS_PUSH_ALLOW", "127.0.0.0/8, ::1"),
        ("ALIAS_PUSH_ID", "grant"),
        ("ALIAS_PUBLIC_ORIGIN", "https://Bank.Example:8443/"),
        ("ALIAS_STORAGE_URL", "/tmp/x"),
        ("ALIAS_NAMESPACE", "t-1"),
        ("ALIAS_TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.7"),
        ("ALIAS_QUOTA_CONTRACTS", "3"),
        ("ALIAS_QUOTA_GUEST_TTL_SECS", "60"),
    ])
    .unwrap();
    assert_eq!(c.gateway.trusted_proxies.len(), 2);
    assert_eq!(c.quotas.contracts, 3);
    assert_eq!(c.quotas.guest_ttl, Duration::from_secs(60));
    assert_eq!(c.pusher.push_allow.len(), 2);
    assert_eq!(c.push_id, PushId::Grant);
    assert_eq!(c.public_origin, "https://bank.example:8443");
    assert_eq!(c.storage_url, "file:///tmp/x");
}

#[test]
fn dump_limits() {
    let c = Config::from_pairs(&[]).unwrap();
    assert_eq!(
        (
            c.processor.max_entries,
            c.processor.max_uncompressed,
            c.processor.max_ratio
        ),
        (1_000_000, 256 << 30, 200)
    );
    assert_eq!(c.processor.job_timeout, Duration::from_secs(1500));
    let c = Config::from_pairs(&[
        ("ALIAS_MAX_ENTRIES", "10"),
        ("ALIAS_MAX_UNCOMPRESSED", "1000"),
        ("ALIAS_MAX_RATIO", "50"),
        ("ALIAS_JOB_TIMEOUT_SECS", "3"),
    ])
    .unwrap();
    assert_eq!(
        (
            c.processor.max_entries,
            c.processor.max_uncompressed,
            c.processor.max_ratio
        ),
        (10, 1000, 50)
    );
    assert_eq!(c.processor.job_timeout, Duration::from_secs(3));
    let err = Config::from_pairs(&[("ALIAS_MAX_ENTRIES", "0")]).unwrap_err();
    assert!(err.to_string().contains("ALIAS_MAX_ENTRIES"));
}

#[test]
fn build_niceness_is_bounded() {
    assert_eq!(Config::from_pairs(&[]).unwrap().processor.build_nice, 10);
    let nice = |v: &str| Config::from_pairs(&[("ALIAS_BUILD_NICE", v)]);
    assert_eq!(nice("0").unwrap().processor.build_nice, 0);
    assert_eq!(nice("19").unwrap().processor.build_nice, 19);
    for bad in ["20", "-1", "many"] {
        // Past the range the variable is named; not a number, its key.
        let err = nice(bad).unwrap_err().to_string().to_lowercase();
        assert!(err.contains("build_nice"), "{bad}: {err}");
    }
}

#[test]
fn push_concurrency_is_the_pushers_own_and_bounded() {
    let c = Config::from_pairs(&[("ALIAS_WORKER_CONCURRENCY", "3")]).unwrap();
    assert_eq!((c.worker_concurrency, c.pusher.push_concurrency), (3, 16));
    let jobs = |v: &str| Config::from_pairs(&[("ALIAS_PUSH_CONCURRENCY", v)]);
    assert_eq!(jobs("1").unwrap().pusher.push_concurrency, 1);
    assert_eq!(jobs("1024").unwrap().pusher.push_concurrency, 1024);
    for bad in ["0", "1025", "many"] {
        let err = jobs(bad).unwrap_err().to_string().to_lowercase();
        assert!(err.contains("push_concurrency"), "{bad}: {err}");
    }
}

#[test]
fn redis_and_rabbitmq_are_given_or_defaulted() {
    let c = Config::from_pairs(&[]).unwrap();
    assert!(!c.redis_given && !c.amqp_given);
    assert_eq!(c.redis_url, DEFAULT_REDIS_URL);
    let c = Config::from_pairs(&[("ALIAS_REDIS_URL", "redis://10.0.0.1:6379")]).unwrap();
    assert!(c.redis_given && !c.amqp_given);
    assert!(Config::from_pairs(&[("ALIAS_AMQP_URL", "http://x")]).is_err());
}

#[test]
fn redis_forms_are_selected_and_checked() {
    use crate::state::RedisTarget;
    let c = Config::from_pairs(&[]).unwrap();
    assert_eq!(c.redis, RedisTarget::Single(DEFAULT_REDIS_URL.into()));
    let c = Config::from_pairs(&[(
        "ALIAS_REDIS_CLUSTER_URLS",
        "redis://10.0.0.1:7000, redis://10.0.0.2:7000",
    )])
    .unwrap();
    assert!(c.redis_given);
    assert_eq!(
        c.redis,
        RedisTarget::Cluster(vec![
            "redis://10.0.0.1:7000".into(),
            "redis://10.0.0.2:7000".into()
        ])
    );
    let c = Config::from_pairs(&[
        ("ALIAS_REDIS_SENTINEL_URLS", "redis://10.0.0.1:26379"),
        ("ALIAS_REDIS_SENTINEL_MASTER", "alias"),
    ])
    .unwrap();
    assert_eq!(
        c.redis,
        RedisTarget::Sentinel {
            sentinels: vec!["redis://10.0.0.1:26379".into()],
            master: "alias".into(),
            login: PrimaryLogin::default(),
        }
    );
    // The primary's login, kept out of the debug output.
    let c = Config::from_pairs(&[
        ("ALIAS_REDIS_SENTINEL_URLS", "redis://10.0.0.1:26379"),
        ("ALIAS_REDIS_SENTINEL_MASTER", "alias"),
        ("ALIAS_REDIS_SENTINEL_USERNAME", "bank"),
        ("ALIAS_REDIS_SENTINEL_PASSWORD", "pw-of-the-primary"),
    ])
    .unwrap();
    let RedisTarget::Sentinel { login, .. } = &c.redis else {
        panic!("{:?}", c.redis)
    };
    assert_eq!(login.username.as_deref(), Some("bank"));
    assert_eq!(login.password.as_deref(), Some("pw-of-the-primary"));
    assert!(!format!("{c:?}").contains("pw-of-the-primary"), "{c:?}");
    assert!(!c.redis.to_string().contains("pw-of-the-primary"));
    // A login without Sentinel is a mistake, said so.
    let alone = Config::from_pairs(&[("ALIAS_REDIS_SENTINEL_PASSWORD", "pw")]);
    assert!(
        matches!(
            alone,
            Err(ConfigError::Needs {
                var: "ALIAS_REDIS_SENTINEL_PASSWORD",
                needs: "ALIAS_REDIS_SENTINEL_URLS"
            })
        ),
        "{alone:?}"
    );
    let exclusive = Config::from_pairs(&[
        ("ALIAS_REDIS_URL", "redis://10.0.0.1:6379"),
        ("ALIAS_REDIS_CLUSTER_URLS", "redis://10.0.0.1:7000"),
    ]);
    assert!(
        matches!(
            exclusive,
            Err(ConfigError::Exclusive {
                first: "ALIAS_REDIS_URL",
                second: "ALIAS_REDIS_CLUSTER_URLS"
            })
        ),
        "{exclusive:?}"
    );
    let both = Config::from_pairs(&[
        ("ALIAS_REDIS_CLUSTER_URLS", "redis://10.0.0.1:7000"),
        ("ALIAS_REDIS_SENTINEL_URLS", "redis://10.0.0.1:26379"),
        ("ALIAS_REDIS_SENTINEL_MASTER", "alias"),
    ]);
    assert!(
        matches!(both, Err(ConfigError::Exclusive { .. })),
        "{both:?}"
    );
    let no_master = Config::from_pairs(&[("ALIAS_REDIS_SENTINEL_URLS", "redis://10.0.0.1:26379")]);
    assert!(
        matches!(
            no_master,
            Err(ConfigError::Needs {
                var: "ALIAS_REDIS_SENTINEL_URLS",
                needs: "ALIAS_REDIS_SENTINEL_MASTER"
            })
        ),
        "{no_master:?}"
    );
    let lone_master = Config::from_pairs(&[("ALIAS_REDIS_SENTINEL_MASTER", "alias")]);
    assert!(
        matches!(lone_master, Err(ConfigError::Needs { .. })),
        "{lone_master:?}"
    );
    for bad in [
        "",
        " , ",
        "http://10.0.0.1:7000",
        "redis://10.0.0.1:7000,nonsense",
    ] {
        let err = Config::from_pairs(&[("ALIAS_REDIS_CLUSTER_URLS", bad)]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    var: "ALIAS_REDIS_CLUSTER_URLS",
                    ..
                }
            ),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn amqp_url_takes_a_list_of_nodes() {
    let list = "amqp://u:p@10.0.0.1:5672/%2f, amqp://u:p@10.0.0.2:5672/%2f";
    let c = Config::from_pairs(&[("ALIAS_AMQP_URL", list)]).unwrap();
    assert!(c.amqp_given);
    assert_eq!(c.amqp_url, list);
    for bad in [
        "amqp://a,,amqp://b",
        "amqp://a,",
        "amqp://a,http://u:secret@b",
        "amqp://a,not a url",
    ] {
        let err = Config::from_pairs(&[("ALIAS_AMQP_URL", bad)]).unwrap_err();
        match &err {
            ConfigError::Invalid { var, value, .. } => {
                assert_eq!(*var, "ALIAS_AMQP_URL", "{bad}: {err}");
                assert!(!value.contains("secret"), "password hidden: {err}");
            }
            other => panic!("{bad}: {other}"),
        }
        assert!(err.to_string().contains("entry 2"), "{bad}: {err}");
    }
}

#[test]
fn readme_lists_every_variable() {
    let readme = include_str!("../../../README.md");
    for (var, default, _) in VARIABLES {
        let row = format!("| `{var}` | `{default}` |");
        assert!(
            readme.contains(&row),
            "README configuration table lacks {row}"
        );
    }
}

#[test]
fn every_documented_variable_is_read() {
    for (var, _, _) in VARIABLES {
        if matches!(*var, "ALIAS_CONFIG" | "ALIAS_LOG_JSON" | "RUST_LOG") {
            continue;
        }
        let key = var.trim_start_matches("ALIAS_").to_ascii_lowercase();
        assert!(
            KEYS.contains(&key.as_str()),
            "{var} is documented but not read"
        );
    }
}

#[test]
fn every_key_is_documented() {
    for key in KEYS {
        let var = format!("ALIAS_{}", key.to_ascii_uppercase());
        assert!(
            VARIABLES.iter().any(|(v, _, _)| *v == var),
            "{var} missing from VARIABLES"
        );
    }
}

/// A directory holding an authority (`ca.pem`), a certificate it signed
/// and its key (`cert.pem`, `key.pem`), and a file that is not PEM.
fn tls_files() -> tempfile::TempDir {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["bank".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    dir
}

#[test]
fn redis_tls_files_are_read_checked_and_go_with_rediss_urls() {
    use crate::state::RedisTarget;
    let dir = tls_files();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (ca, cert, key, junk) = (
        file("ca.pem"),
        file("cert.pem"),
        file("key.pem"),
        file("junk.pem"),
    );
    let single = "rediss://redis.internal:6380";
    // An authority and a client certificate, read at start.
    let c = Config::from_pairs(&[
        ("ALIAS_REDIS_URL", single),
        ("ALIAS_REDIS_CA_FILE", &ca),
        ("ALIAS_REDIS_CLIENT_CERT_FILE", &cert),
        ("ALIAS_REDIS_CLIENT_KEY_FILE", &key),
    ])
    .unwrap();
    assert_eq!(c.redis, RedisTarget::Single(single.into()));
    assert_eq!(
        c.redis_tls.ca_pem.as_deref(),
        Some(std::fs::read(&ca).unwrap().as_slice())
    );
    assert!(c.redis_tls.client_key_pem.is_some());
    assert!(!format!("{c:?}").contains("PRIVATE KEY"), "{c:?}");
    // A cluster over TLS, every seed rediss://.
    let c = Config::from_pairs(&[
        (
            "ALIAS_REDIS_CLUSTER_URLS",
            "rediss://10.0.0.1:7000,rediss://10.0.0.2:7000",
        ),
        ("ALIAS_REDIS_CA_FILE", &ca),
    ])
    .unwrap();
    assert!(c.redis_tls.is_set());
    // The system's authorities: rediss:// alone.
    let c = Config::from_pairs(&[("ALIAS_REDIS_URL", single)]).unwrap();
    assert!(!c.redis_tls.is_set());

    let refused = |pairs: &[(&str, &str)], var: &str, why: &str| {
        let e = Config::from_pairs(pairs).unwrap_err().to_string();
        assert!(e.contains(var) && e.contains(why), "{pairs:?}: {e}");
    };
    // TLS files with a plain URL would protect nothing.
    refused(
        &[
            ("ALIAS_REDIS_URL", "redis://redis.internal:6379"),
            ("ALIAS_REDIS_CA_FILE", &ca),
        ],
        "ALIAS_REDIS_CA_FILE",
        "rediss://",
    );
    refused(
        &[
            ("ALIAS_REDIS_URL", single),
            ("ALIAS_REDIS_CLIENT_CERT_FILE", &cert),
        ],
        "ALIAS_REDIS_CLIENT_CERT_FILE",
        "ALIAS_REDIS_CLIENT_KEY_FILE",
    );
    refused(
        &[("ALIAS_REDIS_URL", single), ("ALIAS_REDIS_CA_FILE", &junk)],
        "ALIAS_REDIS_CA_FILE",
        "no PEM certificate",
    );
    refused(
        &[
            ("ALIAS_REDIS_URL", single),
            ("ALIAS_REDIS_CLIENT_CERT_FILE", &cert),
            ("ALIAS_REDIS_CLIENT_KEY_FILE", &cert),
        ],
        "ALIAS_REDIS_CLIENT_KEY_FILE",
        "private key",
    );
    refused(
        &[
            ("ALIAS_REDIS_URL", single),
            ("ALIAS_REDIS_CA_FILE", &file("missing.pem")),
        ],
        "ALIAS_REDIS_CA_FILE",
        "cannot be read",
    );
    // Certificate checks cannot be turned off.
    refused(
        &[("ALIAS_REDIS_URL", "rediss://redis.internal:6380/#insecure")],
        "ALIAS_REDIS_URL",
        "cannot be turned off",
    );
    refused(
        &[(
            "ALIAS_REDIS_CLUSTER_URLS",
            "rediss://10.0.0.1:7000,redis://10.0.0.2:7000",
        )],
        "ALIAS_REDIS_CLUSTER_URLS",
        "every URL is rediss://",
    );
    // Sentinels over TLS (and so the primary they name).
    let c = Config::from_pairs(&[
        (
            "ALIAS_REDIS_SENTINEL_URLS",
            "rediss://10.0.0.1:26379,rediss://10.0.0.2:26379",
        ),
        ("ALIAS_REDIS_SENTINEL_MASTER", "alias"),
        ("ALIAS_REDIS_CA_FILE", &ca),
    ])
    .unwrap();
    assert!(c.redis_tls.ca_pem.is_some());
    refused(
        &[
            (
                "ALIAS_REDIS_SENTINEL_URLS",
                "rediss://10.0.0.1:26379,redis://10.0.0.2:26379",
            ),
            ("ALIAS_REDIS_SENTINEL_MASTER", "alias"),
        ],
        "ALIAS_REDIS_SENTINEL_URLS",
        "every URL is rediss://",
    );
    refused(
        &[
            ("ALIAS_REDIS_SENTINEL_URLS", "redis://10.0.0.1:26379"),
            ("ALIAS_REDIS_SENTINEL_MASTER", "alias"),
            ("ALIAS_REDIS_CA_FILE", &ca),
        ],
        "ALIAS_REDIS_CA_FILE",
        "rediss://",
    );
}
