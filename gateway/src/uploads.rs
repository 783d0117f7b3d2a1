//! Deadlines on request bodies and caps on concurrent dump uploads.
//!
//! * Every request body may pause at most `ALIAS_BODY_IDLE_TIMEOUT_MS`
//!   between two pieces; a dump upload must also bring in
//!   `ALIAS_BODY_MIN_RATE` bytes per second over each
//!   `ALIAS_BODY_RATE_WINDOW_MS` of waiting for it. Past either, the body
//!   fails (the upload handler aborts its storage write: nothing is stored)
//!   and [`body_deadlines`] answers 408 with `Connection: close`.
//! * Dump uploads in progress are capped per signing key
//!   (`ALIAS_UPLOADS_PER_KEY`) and per client address
//!   (`ALIAS_UPLOADS_PER_ADDR`) on each gateway: past a cap, 429 with
//!   `Retry-After`.

use crate::error::ApiError;
use crate::AppState;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::{ConnectionType, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use bytes::Bytes;
use futures_util::Stream;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The route whose bodies must also keep a minimum rate.
const UPLOAD_ROUTE: &str = "/alias/dumps/{provider}/{name}";

/// `Retry-After` of a refused upload, in seconds.
const UPLOAD_RETRY_AFTER_SECS: u64 = 10;

const IDLE: u8 = 1;
const SLOW: u8 = 2;

/// What the deadlines of one request body decided.
#[derive(Debug, Clone, Default)]
struct Verdict(Arc<AtomicU8>);

impl Verdict {
    fn trip(&self, why: u8) {
        self.0.store(why, Ordering::SeqCst);
    }

    /// The 408 to answer, if the body broke a deadline.
    fn error(&self, app: &AppState) -> Option<ApiError> {
        match self.0.load(Ordering::SeqCst) {
            IDLE => Some(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body paused for more than {} ms",
                    app.config.gateway.body_idle_timeout.as_millis()
                ),
            )),
            SLOW => Some(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_too_slow",
                format!(
                    "the upload brought less than {} bytes per second over {} ms",
                    app.config.gateway.body_min_rate,
                    app.config.gateway.body_rate_window.as_millis()
                ),
            )),
            _ => None,
        }
    }
}

/// A request body with an idle timeout and, optionally, a minimum rate.
///
/// Only time spent waiting for the client counts: the clock runs while the
/// handler waits for the next piece, not while the handler is busy (or held
/// back by storage).
struct Deadlines {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>,
    idle: Duration,
    /// Bytes per second, and the window of waiting they are measured over.
    rate: Option<(u64, Duration)>,
    sleep: Pin<Box<Sleep>>,
    waiting_since: Option<Instant>,
    window_wait: Duration,
    window_bytes: u64,
    verdict: Verdict,
    done: bool,
}

impl Deadlines {
    fn fail(&mut self, why: u8) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.verdict.trip(why);
        self.done = true;
        let text = if why == IDLE {
            "request body idle timeout"
        } else {
            "request body below the minimum rate"
        };
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            text,
        )))))
    }

    /// Counts a piece that took `waited` to arrive; whether the rate holds.
    fn rate_holds(&mut self, len: usize, waited: Duration) -> bool {
        let Some((rate, window)) = self.rate else {
            return true;
        };
        self.window_wait += waited;
        self.window_bytes = self.window_bytes.saturating_add(len as u64);
        if self.window_wait < window {
            return true;
        }
        #[allow(clippy::cast_precision_loss)]
        let needed = rate as f64 * self.window_wait.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let holds = self.window_bytes as f64 >= needed;
        self.window_wait = Duration::ZERO;
        self.window_bytes = 0;
        holds
    }
}

impl Stream for Deadlines {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let since = match self.waiting_since {
            Some(since) => since,
            None => {
                let now = Instant::now();
                let idle = self.idle;
                self.sleep.as_mut().reset(now + idle);
                self.waiting_since = Some(now);
                now
            }
        };
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                self.waiting_since = None;
                if !self.rate_holds(bytes.len(), since.elapsed()) {
                    return self.fail(SLOW);
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(other) => {
                self.waiting_since = None;
                Poll::Ready(other)
            }
            Poll::Pending => {
                if self.sleep.as_mut().poll(cx).is_ready() {
                    return self.fail(IDLE);
                }
                Poll::Pending
            }
        }
    }
}

/// Middleware: puts every request body under the idle timeout (dump
/// uploads under the minimum rate too) and answers 408, closing the
/// connection, when a body broke its deadline, whatever the handler made of
/// the failed body.
pub async fn body_deadlines(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(app) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let is_upload =
        req.method() == Method::PUT && req.match_pattern().as_deref() == Some(UPLOAD_ROUTE);
    let rate = (is_upload && app.config.gateway.body_min_rate > 0).then_some((
        app.config.gateway.body_min_rate,
        app.config.gateway.body_rate_window,
    ));
    let verdict = Verdict::default();
    let body = Deadlines {
        inner: Box::pin(req.take_payload()),
        idle: app.config.gateway.body_idle_timeout,
        rate,
        sleep: Box::pin(tokio::time::sleep(app.config.gateway.body_idle_timeout)),
        waiting_since: None,
        window_wait: Duration::ZERO,
        window_bytes: 0,
        verdict: verdict.clone(),
        done: false,
    };
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(body);
    req.set_payload(actix_web::dev::Payload::from(stream));
    let path = req.path().to_owned();
    let result = next.call(req).await;
    let Some(err) = verdict.error(&app) else {
        return result.map(|mut res| {
            if is_upload && res.status() == StatusCode::TOO_MANY_REQUESTS {
                if let Ok(v) = HeaderValue::from_str(&UPLOAD_RETRY_AFTER_SECS.to_string()) {
                    if !res.headers().contains_key(RETRY_AFTER) {
                        res.headers_mut().insert(RETRY_AFTER, v);
                    }
                }
            }
            res.map_into_left_body()
        });
    };
    tracing::info!(code = err.code, %path, "request body refused");
    let mut resp = err.error_response();
    resp.head_mut().set_connection_type(ConnectionType::Close);
    match result {
        Ok(res) => Ok(res.into_response(resp).map_into_right_body()),
        Err(_) => Err(actix_web::error::InternalError::from_response(err, resp).into()),
    }
}

/// Counts of dump uploads in progress, per signing key and per address.
#[derive(Debug, Default)]
pub struct UploadSlots {
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// One upload's place under a cap, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    held: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl UploadSlots {
    fn acquire(&self, key: String, cap: usize, reason: &str) -> Result<Slot, ApiError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(key.clone()).or_insert(0);
        if *n >= cap {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_uploads",
                format!("{reason} (at most {cap} at once); retry when one has finished"),
            )
            .with("retryAfter", UPLOAD_RETRY_AFTER_SECS.into()));
        }
        *n += 1;
        Ok(Slot {
            held: self.held.clone(),
            key,
        })
    }

    /// A place for one more upload from `addr`, or 429.
    pub fn for_addr(&self, app: &AppState, addr: Option<IpAddr>) -> Result<Slot, ApiError> {
        let addr = addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        self.acquire(
            format!("addr:{addr}"),
            app.config.gateway.uploads_per_addr,
            "too many uploads in progress from this address",
        )
    }

    /// A place for one more upload signed by `user`, or 429.
    pub fn for_key(&self, app: &AppState, user: &str) -> Result<Slot, ApiError> {
        self.acquire(
            format!("key:{user}"),
            app.config.gateway.uploads_per_key,
            "too many uploads in progress for this key",
        )
    }

    /// Uploads in progress (for tests and metrics).
    pub fn in_progress(&self) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .filter(|(k, _)| k.starts_with("key:"))
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadlines(rate: Option<(u64, Duration)>) -> Deadlines {
        Deadlines {
            inner: Box::pin(futures_util::stream::empty()),
            idle: Duration::from_secs(1),
            rate,
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
            waiting_since: None,
            window_wait: Duration::ZERO,
            window_bytes: 0,
            verdict: Verdict::default(),
            done: false,
        }
    }

    #[tokio::test]
    async fn rate_is_measured_over_whole_windows_of_waiting() {
        let mut d = deadlines(Some((1000, Duration::from_secs(10))));
        // A fast start carries the first window.
        assert!(d.rate_holds(20_000, Duration::from_secs(1)));
        assert!(d.rate_holds(1, Duration::from_secs(9)));
        // Then a drip of 1 byte every 5 s: refused at the end of the window.
        assert!(d.rate_holds(1, Duration::from_secs(5)));
        assert!(!d.rate_holds(1, Duration::from_secs(5)));
        // Without a rate, anything goes.
        let mut d = deadlines(None);
        assert!(d.rate_holds(0, Duration::from_secs(1000)));
    }

    #[test]
    fn slots_are_capped_and_given_back() {
        let slots = UploadSlots::default();
        let a = slots.acquire("key:x".into(), 2, "x");
        let b = slots.acquire("key:x".into(), 2, "x");
        assert!(a.is_ok() && b.is_ok());
        let refused = slots.acquire("key:x".into(), 2, "x");
        assert!(matches!(refused, Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS));
        assert!(slots.acquire("key:y".into(), 2, "y").is_ok());
        assert_eq!(slots.in_progress(), 2);
        drop(a);
        assert!(slots.acquire("key:x".into(), 2, "x").is_ok());
        drop(b);
        assert_eq!(slots.in_progress(), 0);
        assert!(slots.held.lock().map(|h| h.is_empty()).unwrap_or(false));
    }
}
