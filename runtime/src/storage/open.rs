//! Opening a storage: the backend a URL names (a directory, S3, memory).

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use super::{validate_key, Inner, S3Settings, Storage, StorageError, SPOOLED_PARTS_IN_FLIGHT};

pub(super) fn unsupported(url: &str, reason: impl Into<String>) -> StorageError {
    StorageError::UnsupportedUrl {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

impl Storage {
    /// Opens the storage a URL names: `file:///abs/dir` (the directory is
    /// created when missing), `s3://bucket[/prefix]` with `s3`, or
    /// `memory://` (a new, empty in-memory store).
    pub fn from_url(url: &str, s3: &S3Settings) -> Result<Storage, StorageError> {
        let parsed = url::Url::parse(url).map_err(|e| unsupported(url, e.to_string()))?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(unsupported(url, "query and fragment are not allowed"));
        }
        match parsed.scheme() {
            "file" => Self::local(url, &parsed),
            "s3" => Self::s3(url, &parsed, s3),
            "memory" => {
                let path = parsed.path();
                if parsed.host_str().is_some_and(|h| !h.is_empty())
                    || !(path.is_empty() || path == "/")
                {
                    return Err(unsupported(url, "memory:// takes no host or path"));
                }
                Ok(Self::from_store(Arc::new(InMemory::new()), "memory://"))
            }
            other => Err(unsupported(url, format!("unknown scheme {other:?}"))),
        }
    }

    pub(super) fn local(url: &str, parsed: &url::Url) -> Result<Storage, StorageError> {
        let dir = parsed
            .to_file_path()
            .map_err(|()| unsupported(url, "not a local absolute path"))?;
        std::fs::create_dir_all(&dir)?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| unsupported(url, e.to_string()))?
            .with_automatic_cleanup(true);
        let location = format!("file://{}", dir.display());
        let root = std::fs::canonicalize(&dir)?;
        Ok(Self::build(Arc::new(store), location, Some(root)))
    }

    pub(super) fn s3(
        url: &str,
        parsed: &url::Url,
        s3: &S3Settings,
    ) -> Result<Storage, StorageError> {
        let bucket = parsed.host_str().unwrap_or_default();
        if !is_bucket_name(bucket) {
            return Err(unsupported(url, "missing or invalid bucket name"));
        }
        // The prefix comes from the raw text: the URL parser would quietly
        // resolve `.` and `..` segments.
        let raw_path = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map_or("", |(_, path)| path);
        let prefix = raw_path.strip_suffix('/').unwrap_or(raw_path);
        if !prefix.is_empty() {
            validate_key(prefix).map_err(|e| unsupported(url, format!("prefix: {e}")))?;
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(s3.allow_http)
            .with_virtual_hosted_style_request(s3.virtual_hosted_style);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &s3.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| unsupported(url, e.to_string()))?;
        let mut location = format!("s3://{bucket}");
        if !prefix.is_empty() {
            location.push('/');
            location.push_str(prefix);
        }
        if let Some(endpoint) = &s3.endpoint {
            location.push_str(&format!(" at {endpoint}"));
        }
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(Self::from_store(store, location))
    }

    /// Wraps any object store (a test double, a throttled store…);
    /// `location` is how logs name it.
    pub fn from_store(store: Arc<dyn ObjectStore>, location: impl Into<String>) -> Storage {
        Self::build(store, location.into(), None)
    }

    pub(super) fn build(
        store: Arc<dyn ObjectStore>,
        location: String,
        local_root: Option<PathBuf>,
    ) -> Self {
        Storage {
            inner: Arc::new(Inner {
                store,
                location,
                local_root,
                spooled_parts: Arc::new(tokio::sync::Semaphore::new(SPOOLED_PARTS_IN_FLIGHT)),
            }),
        }
    }

    /// Where the objects live, for logs (never holds credentials).
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    pub(super) fn store(&self) -> &dyn ObjectStore {
        self.inner.store.as_ref()
    }
}

pub(super) fn is_bucket_name(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s3 = S3Settings::default();
        for bad in [
            "ftp://x/y",
            "file://relative",
            "s3://",
            "s3://UPPER",
            "s3://bucket/../x",
            "s3://bucket/a//b",
            "memory://host",
            "memory:///x",
            "file:///tmp/x?y=1",
            "/tmp/x",
        ] {
            assert!(
                matches!(
                    Storage::from_url(bad, &s3),
                    Err(StorageError::UnsupportedUrl { .. })
                ),
                "{bad} accepted"
            );
        }
        assert!(Storage::from_url("memory://", &s3).is_ok());
        let s = Storage::from_url("s3://bucket/pre/fix/", &s3);
        assert_eq!(
            s.map(|s| s.location().to_owned()).ok().as_deref(),
            Some("s3://bucket/pre/fix")
        );
    }
}
