//! Answers for writes only once they would survive the loss of the Redis
//! primary.
//!
//! Redis replicates asynchronously: a dump record, a deletion, a binding or
//! a revocation written just before the primary dies (under Sentinel, its
//! replica takes over) is gone, yet the caller was told it is stored. So a
//! request that may have written (any method but `GET`, `HEAD` and
//! `OPTIONS`) and succeeded waits for [`State::settle_writes`] before its
//! answer leaves: a replica confirmed every write this gateway made so far
//! (one `WAIT` covers the requests that arrive meanwhile). A primary with
//! no replica connected (after a failover, until the old primary returns)
//! answers on its own: there is no copy to wait for. When a connected
//! replica does not confirm in time, or the primary cannot be reached, the
//! answer is 503 `not_replicated` with `Retry-After`: every writing route
//! is safe to ask again (an upload replaces the dump of its name, a grant
//! sent again is kept or joined). On one server or a cluster the check
//! costs nothing.
//!
//! [`State::settle_writes`]: runtime::state::StateStore::settle_writes

use crate::{ApiError, AppState};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use runtime::state::Settled;

/// Seconds a caller is asked to wait before asking again.
const RETRY_AFTER_SECS: u16 = 2;

/// Middleware: see the module documentation.
pub async fn durable_writes(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let app = writes
        .then(|| req.app_data::<web::Data<AppState>>().cloned())
        .flatten();
    let res = next.call(req).await?;
    let Some(app) = app else {
        return Ok(res.map_into_left_body());
    };
    if res.status().is_client_error() || res.status().is_server_error() {
        return Ok(res.map_into_left_body());
    }
    let refusal = match app.state.settle_writes().await {
        Ok(Settled::Replicated) => return Ok(res.map_into_left_body()),
        Ok(Settled::Alone) => {
            tracing::warn!(path = %res.request().path(), "the Redis primary has no replica; a write is answered on the primary alone");
            return Ok(res.map_into_left_body());
        }
        Ok(Settled::Unconfirmed) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_replicated",
            "no Redis replica confirmed the change in time; it may not survive a failover: ask again",
        ),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_replicated",
            format!("the change could not be confirmed on a replica ({e}): ask again"),
        ),
    };
    tracing::warn!(path = %res.request().path(), status = %res.status(), "a write's answer withheld: not confirmed on a replica");
    let refusal = refusal.retry_after(RETRY_AFTER_SECS);
    let (req, _) = res.into_parts();
    Ok(ServiceResponse::new(req, refusal.error_response()).map_into_right_body())
}
