//! The messages that travel on RabbitMQ. They carry ids, never data: the
//! state in Redis and the bytes in resource storage say the rest.

use serde::{Deserialize, Serialize};

/// Build the per-scope archives of one transfer generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessJob {
    /// The transfer id (contract or grant hash, URL-safe base64).
    pub transfer: String,
    /// The generation this job belongs to; stale generations are dropped.
    pub generation: u64,
}

/// Compute the preview of one user's contract (a dry run of the build):
/// the record is the user's preview of the contract in
/// [`crate::state::PreviewStore`], and only run `id` stores its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewJob {
    /// The user (public key, URL-safe base64).
    pub user: String,
    /// The contract hash.
    pub contract: String,
    /// The run.
    pub id: String,
}

impl PreviewJob {
    /// The message id.
    pub fn message_id(&self) -> String {
        format!("preview:{}", self.id)
    }
}

/// Push the archives of one transfer generation, starting with `file` (or,
/// with no file, the start/finish requests). The processor queues one per
/// announcement of archives, not per archive: the job pushes every archive
/// recorded when it starts, and is acknowledged only once each is counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushJob {
    /// The transfer id.
    pub transfer: String,
    /// The generation.
    pub generation: u64,
    /// The archive file name; `None` for a transfer without archives.
    pub file: Option<String>,
}

impl ProcessJob {
    /// The message id: the same job published twice has the same id.
    pub fn message_id(&self) -> String {
        format!("{}:{}:process", self.transfer, self.generation)
    }
}

impl PushJob {
    /// The push jobs of a generation: one per archive, or one without a
    /// file (start and finish only) when it has none.
    pub fn for_files<'a>(
        transfer: &str,
        generation: u64,
        files: impl IntoIterator<Item = &'a str>,
    ) -> Vec<PushJob> {
        let mut jobs: Vec<PushJob> = files
            .into_iter()
            .map(|f| PushJob {
                transfer: transfer.to_owned(),
                generation,
                file: Some(f.to_owned()),
            })
            .collect();
        if jobs.is_empty() {
            jobs.push(PushJob {
                transfer: transfer.to_owned(),
                generation,
                file: None,
            });
        }
        jobs
    }

    /// The message id.
    pub fn message_id(&self) -> String {
        format!(
            "{}:{}:push:{}",
            self.transfer,
            self.generation,
            self.file.as_deref().unwrap_or("")
        )
    }
}

/// A job that could not be serialized: nothing is published.
#[derive(Debug, thiserror::Error)]
#[error("the job could not be serialized: {0}")]
pub struct EncodeError(#[from] serde_json::Error);

/// Serializes a job to its message body.
pub fn encode<T: Serialize>(job: &T) -> Result<Vec<u8>, EncodeError> {
    Ok(serde_json::to_vec(job)?)
}

/// Reads a job from a message body.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let job = ProcessJob {
            transfer: "abc".into(),
            generation: 3,
        };
        assert_eq!(decode::<ProcessJob>(&encode(&job).unwrap()).unwrap(), job);
        assert_eq!(job.message_id(), "abc:3:process");
        assert!(decode::<ProcessJob>(br#"{"transfer":"a","generation":1,"x":1}"#).is_err());
        let push = PushJob {
            transfer: "abc".into(),
            generation: 3,
            file: Some("a.zip".into()),
        };
        assert_eq!(decode::<PushJob>(&encode(&push).unwrap()).unwrap(), push);
        let preview = PreviewJob {
            user: "u".into(),
            contract: "c".into(),
            id: "r".into(),
        };
        assert_eq!(
            decode::<PreviewJob>(&encode(&preview).unwrap()).unwrap(),
            preview
        );
        assert_eq!(preview.message_id(), "preview:r");
        // A value serde_json refuses (a map with non-string keys) is a
        // typed error, never an empty body.
        let refused: std::collections::HashMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(encode(&refused).is_err());
    }
}
