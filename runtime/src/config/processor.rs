//! The processor's section: the export limits and the job's time limit.

use super::raw::Raw;
use super::{positive, ConfigError};
use std::time::Duration;

/// Settings only the processor reads.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Most entries in all parts of an export.
    pub max_entries: u64,
    /// Most bytes an export may declare or inflate.
    pub max_uncompressed: u64,
    /// Largest compression ratio of dump entries.
    pub max_ratio: u64,
    /// Wall-clock limit of one processing job.
    pub job_timeout: Duration,
    /// Units of one build run at once; `None` for the number of cores.
    pub build_threads: Option<usize>,
    /// Niceness added to the build threads (0–19).
    pub build_nice: i32,
}

impl ProcessorConfig {
    /// Validates the processor's variables.
    pub(super) fn validate(raw: &Raw) -> Result<ProcessorConfig, ConfigError> {
        Ok(ProcessorConfig {
            max_entries: positive("ALIAS_MAX_ENTRIES", raw.max_entries)?,
            max_uncompressed: positive("ALIAS_MAX_UNCOMPRESSED", raw.max_uncompressed)?,
            max_ratio: positive("ALIAS_MAX_RATIO", raw.max_ratio)?,
            job_timeout: Duration::from_secs(positive(
                "ALIAS_JOB_TIMEOUT_SECS",
                raw.job_timeout_secs,
            )?),
            build_threads: match raw.build_threads {
                0 => None,
                n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            },
            build_nice: match i32::try_from(raw.build_nice) {
                Ok(n) if n <= 19 => n,
                _ => {
                    return Err(super::invalid(
                        "ALIAS_BUILD_NICE",
                        &raw.build_nice.to_string(),
                        "not a niceness from 0 to 19",
                    ))
                }
            },
        })
    }
}
