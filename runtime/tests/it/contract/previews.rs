//! Previews: one pending preview per user and contract, the hourly limit,
//! and expiry.

use super::*;

fn preview_key(user: &str, contract: &str) -> PreviewKey {
    PreviewKey::new(user, contract).unwrap()
}

fn ready(records: u64) -> PreviewState {
    PreviewState::Ready {
        scopes: vec![ScopeSummary {
            scope: "google.*".into(),
            file: "google.all.zip".into(),
            files: 2,
            records,
            bytes: 10,
            first_files: vec!["a.json".into()],
            samples: vec!["<script>{\"x\":1}".into()],
            skipped: 0,
            notes: Vec::new(),
        }],
        missing: vec!["amazon.*".into()],
        elapsed_ms: 3,
    }
}

pub async fn state_previews_one_at_a_time_and_limited(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    let limits = PreviewLimits {
        per_hour: 3,
        ..PreviewLimits::DEFAULT
    };
    let (a, scopes) = (preview_key("u", "c1"), vec!["google.*".to_owned()]);
    assert_eq!(s.preview(&a).await.unwrap(), None);
    let PreviewStart::Started(first) = s.start_preview(&a, &scopes, &limits).await.unwrap() else {
        panic!("not started");
    };
    assert!(first.is_pending());
    assert_eq!(first.requested, scopes);
    // One at a time per user and contract.
    assert_eq!(
        s.start_preview(&a, &scopes, &limits).await.unwrap(),
        PreviewStart::Busy(first.clone())
    );
    assert_eq!(s.preview(&a).await.unwrap(), Some(first.clone()));
    // Only the pending run stores its outcome, once.
    let ttl = Duration::from_secs(60);
    assert!(!s.finish_preview(&a, "other", &ready(1), ttl).await.unwrap());
    assert!(s
        .finish_preview(&a, &first.id, &ready(1), ttl)
        .await
        .unwrap());
    assert!(!s
        .finish_preview(&a, &first.id, &ready(2), ttl)
        .await
        .unwrap());
    let done = s.preview(&a).await.unwrap().unwrap();
    assert_eq!(done.state, ready(1));
    assert_eq!(
        (done.id.as_str(), done.created_ms),
        (first.id.as_str(), first.created_ms)
    );
    // Nobody else's key sees it; a finish for a key never started stores nothing.
    let other = preview_key("v", "c1");
    assert_eq!(s.preview(&other).await.unwrap(), None);
    assert!(!s
        .finish_preview(&other, &first.id, &ready(1), ttl)
        .await
        .unwrap());
    assert_eq!(s.preview(&other).await.unwrap(), None);
    // A finished one may be asked again (a fresh run), within the limit.
    let PreviewStart::Started(second) = s.start_preview(&a, &scopes, &limits).await.unwrap() else {
        panic!("not restarted");
    };
    assert_ne!(second.id, first.id);
    let failed = PreviewState::Failed {
        reason: "corrupt dump".into(),
    };
    assert!(s
        .finish_preview(&a, &second.id, &failed, ttl)
        .await
        .unwrap());
    let c2 = preview_key("u", "c2");
    assert!(matches!(
        s.start_preview(&c2, &scopes, &limits).await.unwrap(),
        PreviewStart::Started(_)
    ));
    // The fourth of the hour is refused, whatever the contract; nothing
    // is stored for it.
    let c3 = preview_key("u", "c3");
    match s.start_preview(&c3, &scopes, &limits).await.unwrap() {
        PreviewStart::Limited { retry_after } => {
            assert!(retry_after <= PreviewLimits::WINDOW && !retry_after.is_zero())
        }
        other => panic!("not limited: {other:?}"),
    }
    assert_eq!(s.preview(&c3).await.unwrap(), None);
    assert_eq!(s.preview(&a).await.unwrap().unwrap().state, failed);
    // Another user has an hour of their own.
    assert!(matches!(
        s.start_preview(&other, &scopes, &limits).await.unwrap(),
        PreviewStart::Started(_)
    ));
    assert!(s.forget_preview(&a).await.unwrap());
    assert!(!s.forget_preview(&a).await.unwrap());
    assert_eq!(s.preview(&a).await.unwrap(), None);
    env.finish().await;
}

pub async fn state_previews_expire(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    let limits = PreviewLimits {
        pending_ttl: Duration::from_millis(300),
        ..PreviewLimits::DEFAULT
    };
    let (k, scopes) = (preview_key("u", "c"), vec!["google.*".to_owned()]);
    let k = &k;
    let gone = |what: &'static str| async move {
        let deadline = tokio::time::Instant::now() + WAIT;
        while s.preview(k).await.unwrap().is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} never expired"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let PreviewStart::Started(p) = s.start_preview(k, &scopes, &limits).await.unwrap() else {
        panic!("not started");
    };
    // A pending preview whose processor never answers goes away …
    gone("a pending preview").await;
    // … its late result is not stored, and a new one can start.
    assert!(!s
        .finish_preview(k, &p.id, &ready(1), Duration::from_secs(60))
        .await
        .unwrap());
    let PreviewStart::Started(p) = s.start_preview(k, &scopes, &limits).await.unwrap() else {
        panic!("not started again");
    };
    assert!(s
        .finish_preview(k, &p.id, &ready(1), Duration::from_millis(300))
        .await
        .unwrap());
    assert!(s.preview(k).await.unwrap().is_some());
    gone("a result").await;
    env.finish().await;
}
