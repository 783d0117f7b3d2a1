//! API errors: the reference's `{"status":"error","reason":…}` shape plus a
//! stable machine-readable `code`, each with its HTTP status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use protocol::wire::ErrorEnvelope;
use serde_json::json;

/// An error answered to an HTTP client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`invalid_token`, `policy`, `unknown_user`, …).
    pub code: &'static str,
    /// Human-readable reason (the reference's message where one exists).
    pub reason: String,
    /// Extra fields merged into the body.
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds for a `Retry-After` header, if any (small, so that the
    /// error stays small).
    pub retry_after: Option<u16>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            code,
            reason: reason.into(),
            extra: None,
            retry_after: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(code: &'static str, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, reason)
    }

    /// 403 Forbidden.
    pub fn forbidden(code: &'static str, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, reason)
    }

    /// 503 Service Unavailable (a dependency is down); details go to the log.
    pub fn unavailable(what: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{what} unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what} is unavailable, retry later"),
        )
    }

    /// Adds a `Retry-After: secs` header.
    pub fn retry_after(mut self, secs: u16) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra
            .get_or_insert_with(serde_json::Map::new)
            .insert(key.to_owned(), value);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.reason)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = ErrorEnvelope::new(self.code, self.reason.clone()).to_json();
        if let Some(extra) = &self.extra {
            body.extend(extra.clone());
        }
        let mut resp = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            resp.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        resp.json(body)
    }
}

impl From<runtime::state::StateError> for ApiError {
    fn from(e: runtime::state::StateError) -> Self {
        match e {
            runtime::state::StateError::Quota { quota, limit } => quota_exceeded(quota, limit),
            other => ApiError::unavailable("state store", other),
        }
    }
}

/// A per-user quota refused the change: 413 for a byte quota, 409 for a
/// count, code `quota_exceeded` with the quota's name and limit.
pub fn quota_exceeded(quota: &str, limit: u64) -> ApiError {
    let status = if quota.ends_with("bytes") {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::CONFLICT
    };
    ApiError::new(
        status,
        "quota_exceeded",
        format!("the user's {quota} quota ({limit}) is exhausted"),
    )
    .with("quota", json!(quota))
    .with("limit", json!(limit))
}

/// The JSON error body for errors raised by actix itself (payload too
/// large, malformed paths), so every error has the same shape.
pub fn json_error_handler(err: actix_web::Error) -> actix_web::Error {
    let status = err.as_response_error().status_code();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::NOT_FOUND => "not_found",
        _ => "bad_request",
    };
    ApiError::new(status, code, err.to_string()).into()
}
