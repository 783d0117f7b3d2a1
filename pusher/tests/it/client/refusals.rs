//! Failures classified by kind, the SSRF guard, and redirects that are
//! never followed.

use super::*;

#[tokio::test]
async fn failures_are_classified_by_kind() {
    // Connection refused: nothing was sent.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = client_allowing(&["127.0.0.0/8"]);
    let closed = PushTarget::new(&format!("http://127.0.0.1:{port}/alias/push/"), "x").unwrap();
    let err = client.start(&closed, "t").await.unwrap_err();
    assert!(
        matches!(
            err,
            PushError::Transport {
                kind: TransportKind::Connect,
                delivery: Delivery::NotSent,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.outcome().is_unknown());

    // An answer slower than the request timeout: outcome unknown.
    let env = Env::new(Faults::none());
    env.start().await;
    env.sink.set_faults(Faults {
        delay_ms: 1500,
        ..Faults::none()
    });
    let impatient = PushClient::new(
        SsrfGuard::new(vec!["127.0.0.0/8".parse().unwrap()]),
        ClientConfig {
            request_timeout: Duration::from_millis(300),
            ..ClientConfig::default()
        },
    )
    .unwrap();
    let url = env.target.file_url("a.zip").unwrap();
    let err = impatient
        .put_chunk(&url, 0, Bytes::from_static(b"abc"), 3)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PushError::Transport {
                kind: TransportKind::Timeout,
                delivery: Delivery::Unknown,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(Outcome::of(&Err::<(), _>(err)).is_unknown());

    // Statuses: a 409 carries the client's offset; a 400 is permanent.
    env.sink.set_faults(Faults::none());
    let err = env
        .client
        .put_chunk(&url, 5, Bytes::from_static(b"abc"), 8)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PushError::Status {
                status: 409,
                upload_offset: Some(3),
                ..
            }
        ),
        "{err:?}"
    );
    let bad = env.target.file_url("b.zip").unwrap();
    let err = env.client.finish_file(&bad, 1, "x").await.unwrap_err();
    assert_eq!(
        err.outcome(),
        Outcome::Permanent(PermanentReason::Status(400))
    );
    assert!(err.to_string().contains("size mismatch"), "{err}");
    assert_eq!(env.client.head_offset(&url).await.unwrap(), Some(3));
    assert!(matches!(
        env.client
            .put_chunk(&url, 0, Bytes::new(), 3)
            .await
            .unwrap_err(),
        PushError::InvalidRequest(_)
    ));
}

#[tokio::test]
async fn ssrf_guard_refuses_private_destinations() {
    let env = Env::new(Faults::none());
    let port = env.sink.addr().port();
    let strict = client_allowing(&[]);
    let id = env.id.clone();

    for (host, class) in [
        ("127.0.0.1", AddrClass::Loopback),
        ("localhost", AddrClass::Loopback),
        ("[::ffff:127.0.0.1]", AddrClass::Loopback),
        ("[::1]", AddrClass::Loopback),
        ("169.254.169.254", AddrClass::LinkLocal),
        ("[fd00::1]", AddrClass::UniqueLocal),
        ("0.0.0.0", AddrClass::Unspecified),
        ("10.1.2.3", AddrClass::Private),
        ("2130706433", AddrClass::Loopback),
    ] {
        let target = PushTarget::new(&format!("http://{host}:{port}/alias/push/"), &id).unwrap();
        let err = strict.start(&target, &env.grant).await.unwrap_err();
        assert_eq!(
            err.outcome(),
            Outcome::Permanent(PermanentReason::Refused(class)),
            "{host}: {err:?}"
        );
    }
    let target = PushTarget::new(&format!("http://localhost:{port}/alias/push/"), &id).unwrap();
    match strict.start(&target, &env.grant).await.unwrap_err() {
        PushError::Refused(r) => {
            assert_eq!(r.host, "localhost");
            assert_eq!(r.reason, AddrClass::Loopback);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.sink.counters().requests, 0, "nothing reached the sink");

    // Allowed explicitly, loopback works, by address and by name.
    let allowed = client_allowing(&["127.0.0.0/8"]);
    for host in ["127.0.0.1", "localhost"] {
        let target = PushTarget::new(&format!("http://{host}:{port}/alias/push/"), &id).unwrap();
        allowed.start(&target, &env.grant).await.unwrap();
    }
    assert_eq!(env.sink.counters().starts, 2);
    // Other private ranges stay closed.
    let target = PushTarget::new(&format!("http://[::1]:{port}/alias/push/"), &id).unwrap();
    assert!(matches!(
        allowed.start(&target, &env.grant).await,
        Err(PushError::Refused(_))
    ));
}

/// A server that answers every request with a redirect to `location`.
fn redirector(location: String) -> std::net::SocketAddr {
    crate::serve(move |cfg| {
        let location = location.clone();
        cfg.default_service(actix_web::web::to(move || {
            let location = location.clone();
            async move {
                actix_web::HttpResponse::Found()
                    .insert_header(("Location", location))
                    .finish()
            }
        }));
    })
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let env = Env::new(Faults::none());
    let addr = redirector(env.sink.transfer_url(&env.id));
    let target = PushTarget::new(&format!("http://{addr}/alias/push/"), &env.id).unwrap();
    let err = env.client.start(&target, &env.grant).await.unwrap_err();
    assert_eq!(
        err.outcome(),
        Outcome::Permanent(PermanentReason::Status(302))
    );
    assert_eq!(
        env.sink.counters().requests,
        0,
        "the redirect was not followed"
    );
}
