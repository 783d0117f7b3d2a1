//! The errors of [`super`].

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use std::time::Duration;

/// What went wrong talking to RabbitMQ.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqError {
    /// A namespace, message id or other argument is not acceptable.
    #[error("invalid RabbitMQ argument: {0}")]
    InvalidInput(String),
    /// The connection could not be opened (the URL has its password hidden).
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        /// The broker URL without password.
        url: String,
        /// What the client library reported.
        #[source]
        source: lapin::Error,
    },
    /// Declaring an exchange, a queue or a binding failed, for instance
    /// because it exists with other arguments (`PRECONDITION_FAILED`).
    #[error("RabbitMQ refused the declaration of {what}: {source}")]
    Declare {
        /// The exchange, queue or binding.
        what: String,
        /// What the client library reported.
        #[source]
        source: lapin::Error,
    },
    /// An operation on a channel failed.
    #[error("RabbitMQ {op} failed: {source}")]
    Channel {
        /// The operation.
        op: &'static str,
        /// What the client library reported.
        #[source]
        source: lapin::Error,
    },
    /// The broker refused a published message (negative publisher confirm),
    /// e.g. because the queue is full or the broker is out of resources.
    #[error("RabbitMQ refused (nack) message {message_id:?} for {target}")]
    Nack {
        /// The exchange and routing key, or the queue.
        target: String,
        /// The message id.
        message_id: String,
    },
    /// A queue that must exist does not.
    #[error("RabbitMQ queue {0} does not exist")]
    MissingQueue(String),
    /// An operation kept failing (or waiting) for its whole time budget.
    #[error("RabbitMQ {op} gave up after {after:?}: {last}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// How long it tried.
        after: Duration,
        /// The last failure seen.
        last: String,
    },
    /// The channel of a delivery is closed (connection lost, consumer
    /// closed): it can no longer be acked or rejected, and the broker
    /// redelivers the message.
    #[error(
        "the RabbitMQ channel of this delivery is closed; the broker will redeliver the message"
    )]
    Closed,
    /// [`Broker::close`](super::MessageBus::close) was called.
    #[error("the RabbitMQ broker handle was closed")]
    Shutdown,
}

impl MqError {
    /// Whether retrying cannot help: refused credentials or virtual host,
    /// conflicting declarations, invalid arguments, shut down.
    pub fn is_permanent(&self) -> bool {
        match self {
            MqError::InvalidInput(_) | MqError::Shutdown => true,
            MqError::Connect { source, .. }
            | MqError::Declare { source, .. }
            | MqError::Channel { source, .. } => matches!(
                lapin_kind(source),
                Some(
                    AMQPErrorKind::Soft(
                        AMQPSoftError::ACCESSREFUSED | AMQPSoftError::PRECONDITIONFAILED
                    ) | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
                )
            ),
            _ => false,
        }
    }
}

/// The AMQP error kind of a protocol error.
pub(crate) fn lapin_kind(err: &lapin::Error) -> Option<&AMQPErrorKind> {
    match err {
        lapin::Error::ProtocolError(e) => Some(e.kind()),
        _ => None,
    }
}

/// A lapin error for an operation that did not finish in time.
pub(crate) fn timed_out(what: &str) -> lapin::Error {
    lapin::Error::IOError(std::sync::Arc::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} timed out"),
    )))
}
