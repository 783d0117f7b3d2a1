//! What can go wrong with one push request, and the typed retry decision
//! ([`Outcome`]), chosen by status code and error kind, never by message.

use std::fmt;
use std::time::Duration;

use super::ssrf::{AddrClass, Refused};

/// Whether the client may have received a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Nothing reached the client: the connection was never made (refused,
    /// DNS failure, connect timeout). Sending again is safe.
    NotSent,
    /// The request may have been received, in whole or in part (timeout
    /// after sending, connection reset or closed before the answer). For a
    /// chunk, the client's offset must be asked before going on.
    Unknown,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Delivery::NotSent => "not sent",
            Delivery::Unknown => "outcome unknown",
        })
    }
}

/// The kind of a transport failure (no HTTP answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Connecting failed (refused, unreachable, DNS).
    Connect,
    /// Connecting took longer than the connect timeout.
    ConnectTimeout,
    /// The request took longer than the request timeout.
    Timeout,
    /// The connection broke before a complete answer.
    Connection,
    /// Reading the answer's body failed.
    Body,
    /// Any other failure of the HTTP stack.
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "connect failed",
            TransportKind::ConnectTimeout => "connect timed out",
            TransportKind::Timeout => "timed out",
            TransportKind::Connection => "connection broken",
            TransportKind::Body => "answer body failed",
            TransportKind::Other => "HTTP failure",
        })
    }
}

/// A failed push request.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The SSRF guard refused the destination. Permanent.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The push URL or a file name is not acceptable. Permanent.
    #[error("invalid push URL {url:?}: {reason}")]
    InvalidUrl {
        /// The offending URL (or file name).
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A caller mistake (an empty chunk, a range past the total). Permanent.
    #[error("invalid push request: {0}")]
    InvalidRequest(&'static str),
    /// The client answered with a status other than 2xx.
    #[error("{method} {url}: HTTP {status}{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Status {
        /// The request method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// The answer's status code.
        status: u16,
        /// The answer's `Retry-After`, parsed.
        retry_after: Option<Duration>,
        /// The answer's `Upload-Offset`, when present.
        upload_offset: Option<u64>,
        /// The `reason` of a JSON `{"status":"error","reason":…}` answer, for
        /// logs only.
        reason: Option<String>,
    },
    /// No HTTP answer.
    #[error("{method} {url}: {kind} ({delivery})")]
    Transport {
        /// The request method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// What failed.
        kind: TransportKind,
        /// Whether the client may have received the request.
        delivery: Delivery,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client, or a request, could not be built. Permanent.
    #[error("building the HTTP client or request failed: {0}")]
    Setup(#[source] reqwest::Error),
}

impl PushError {
    /// Whether the request was abandoned at its deadline (a slow or stalled
    /// client): the circuit breaker counts it as a failure.
    pub fn is_stalled(&self) -> bool {
        matches!(
            self,
            PushError::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        )
    }
}

/// Why a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// `408`, `425`, `429` or `5xx`: the client answered and kept nothing.
    Status(u16),
    /// A transport failure before anything was sent.
    NotSent(TransportKind),
    /// A transport failure after the request may have been received: the
    /// `Unknown` outcome. A chunk is not simply sent again: ask the client's
    /// offset first (the Resume rule).
    Unknown(TransportKind),
}

/// Why a failed request must not be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermanentReason {
    /// Any other status: `3xx` (redirects are never followed) and `4xx`
    /// other than `408`, `425` and `429`.
    Status(u16),
    /// The SSRF guard refused the destination.
    Refused(AddrClass),
    /// The URL or file name is not acceptable.
    InvalidUrl,
    /// The request itself was wrong.
    InvalidRequest,
    /// The HTTP client or the request could not be built.
    Setup,
}

/// The typed retry decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `2xx`: acknowledged.
    Success,
    /// Worth sending again, after at least `after` when the client said so
    /// (`Retry-After`).
    Retry {
        /// Why.
        reason: RetryReason,
        /// The client's `Retry-After`.
        after: Option<Duration>,
    },
    /// Sending again cannot help.
    Permanent(PermanentReason),
}

impl Outcome {
    /// The decision for an HTTP status (and its `Retry-After`).
    pub fn of_status(status: u16, after: Option<Duration>) -> Outcome {
        match status {
            200..=299 => Outcome::Success,
            408 | 425 | 429 | 500..=599 => Outcome::Retry {
                reason: RetryReason::Status(status),
                after,
            },
            _ => Outcome::Permanent(PermanentReason::Status(status)),
        }
    }

    /// The decision for the result of a request.
    pub fn of<T>(result: &Result<T, PushError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(err) => err.outcome(),
        }
    }

    /// Whether the request may have been received (a chunk then needs the
    /// client's offset before anything else is sent).
    pub fn is_unknown(&self) -> bool {
        matches!(
            self,
            Outcome::Retry {
                reason: RetryReason::Unknown(_),
                ..
            }
        )
    }
}

impl PushError {
    /// The retry decision for this failure.
    pub fn outcome(&self) -> Outcome {
        match self {
            PushError::Refused(r) => Outcome::Permanent(PermanentReason::Refused(r.reason)),
            PushError::InvalidUrl { .. } => Outcome::Permanent(PermanentReason::InvalidUrl),
            PushError::InvalidRequest(_) => Outcome::Permanent(PermanentReason::InvalidRequest),
            PushError::Setup(_) => Outcome::Permanent(PermanentReason::Setup),
            PushError::Status {
                status,
                retry_after,
                ..
            } => Outcome::of_status(*status, *retry_after),
            PushError::Transport { kind, delivery, .. } => Outcome::Retry {
                reason: match delivery {
                    Delivery::NotSent => RetryReason::NotSent(*kind),
                    Delivery::Unknown => RetryReason::Unknown(*kind),
                },
                after: None,
            },
        }
    }

    /// The status code, when the client answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PushError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The client's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PushError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the client may have received the request, for transport
    /// failures.
    pub fn delivery(&self) -> Option<Delivery> {
        match self {
            PushError::Transport { delivery, .. } => Some(*delivery),
            _ => None,
        }
    }
}

/// Finds a typed error in a chain of sources.
pub(crate) fn find_source<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Turns reqwest's error into a [`PushError`], by kind.
pub(crate) fn transport(method: &'static str, url: &str, err: reqwest::Error) -> PushError {
    if let Some(refused) = find_source::<Refused>(&err) {
        return PushError::Refused(refused.clone());
    }
    let (kind, delivery) = if err.is_connect() {
        let kind = if err.is_timeout() {
            TransportKind::ConnectTimeout
        } else {
            TransportKind::Connect
        };
        (kind, Delivery::NotSent)
    } else if err.is_builder() {
        // The request could not be built: sending again cannot help.
        return PushError::Setup(err);
    } else if err.is_timeout() {
        (TransportKind::Timeout, Delivery::Unknown)
    } else if err.is_body() || err.is_decode() {
        (TransportKind::Body, Delivery::Unknown)
    } else if err.is_request() {
        (TransportKind::Connection, Delivery::Unknown)
    } else {
        (TransportKind::Other, Delivery::Unknown)
    };
    PushError::Transport {
        method,
        url: url.to_owned(),
        kind,
        delivery,
        source: err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(Outcome::of_status(200, None), Outcome::Success);
        assert_eq!(Outcome::of_status(204, None), Outcome::Success);
        assert_eq!(Outcome::of_status(206, None), Outcome::Success);
        for code in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert!(
                matches!(
                    Outcome::of_status(code, None),
                    Outcome::Retry { reason: RetryReason::Status(c), .. } if c == code
                ),
                "{code}"
            );
        }
        for code in [301, 302, 307, 400, 401, 403, 404, 409, 413, 416, 422] {
            assert_eq!(
                Outcome::of_status(code, None),
                Outcome::Permanent(PermanentReason::Status(code)),
                "{code}"
            );
        }
        let after = Some(Duration::from_secs(3));
        assert_eq!(
            Outcome::of_status(429, after),
            Outcome::Retry {
                reason: RetryReason::Status(429),
                after
            }
        );
    }

    #[test]
    fn unknown_outcome() {
        let retry = |reason| Outcome::Retry {
            reason,
            after: None,
        };
        assert!(retry(RetryReason::Unknown(TransportKind::Timeout)).is_unknown());
        assert!(!retry(RetryReason::NotSent(TransportKind::Connect)).is_unknown());
        assert!(!retry(RetryReason::Status(503)).is_unknown());
    }
}
