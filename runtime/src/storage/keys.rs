//! The key grammar: which keys and prefixes reach a backend.

use protocol::wire::{is_safe_segment, MAX_SEGMENT_LEN};

use object_store::path::Path;

use super::{StorageError, MAX_KEY_LEN, SHOWN_KEY_CHARS};

/// Checks a key: segments that pass [`is_safe_segment`] joined by single
/// `/`, no leading or trailing `/`, at most [`MAX_KEY_LEN`] bytes.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let fail = |reason| Err(invalid_key(key, reason));
    if key.is_empty() {
        return fail("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return fail("longer than 1024 bytes");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return fail("leading or trailing '/'");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return fail("empty segment");
        }
        if segment == "." || segment == ".." {
            return fail("'.' or '..' segment");
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return fail("segment longer than 255 bytes");
        }
        if !is_safe_segment(segment) {
            return fail("segment outside [A-Za-z0-9._-]");
        }
    }
    Ok(())
}

pub(super) fn invalid_key(key: &str, reason: &'static str) -> StorageError {
    StorageError::InvalidKey {
        key: key.chars().take(SHOWN_KEY_CHARS).collect(),
        reason,
    }
}

/// The object-store path of a checked key.
pub(super) fn key_path(key: &str) -> Result<Path, StorageError> {
    validate_key(key)?;
    Path::parse(key).map_err(|e| StorageError::InvalidKey {
        key: key.chars().take(SHOWN_KEY_CHARS).collect(),
        reason: if matches!(e, object_store::path::Error::EmptySegment { .. }) {
            "empty segment"
        } else {
            "rejected by the object store"
        },
    })
}

/// The path of a listing prefix: empty for everything, otherwise a key, with
/// one trailing `/` tolerated.
pub(super) fn prefix_path(prefix: &str) -> Result<Option<Path>, StorageError> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if prefix.is_empty() {
        return Ok(None);
    }
    key_path(trimmed).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "dumps/AbC-_9/google/takeout-2024.zip",
            "transfers/x/1/scope.tar.gz",
            "a",
            "...",
            "a/.hidden/b",
            "a-b_c.d",
        ] {
            assert!(validate_key(key).is_ok(), "{key}");
        }
        assert!(validate_key(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn rejects_hostile_keys() {
        let long_segment = format!("a/{}", "x".repeat(256));
        let long_key = vec!["abcdefghi"; 103].join("/");
        assert!(long_key.len() > MAX_KEY_LEN);
        for key in [
            "",
            "/",
            "/abs",
            "a/",
            "a//b",
            "../x",
            "a/../b",
            "a/./b",
            ".",
            "..",
            "a\\b",
            "a b",
            "ä",
            "a/b\u{0}",
            "a/b#1",
            "a/b%2F",
            "a/b?c",
            "C:x",
            "a\nb",
            long_segment.as_str(),
            long_key.as_str(),
        ] {
            assert!(
                matches!(validate_key(key), Err(StorageError::InvalidKey { .. })),
                "{key:?} accepted"
            );
        }
    }

    #[test]
    fn safe_segments() {
        assert!(is_safe_segment("Takeout-001.zip"));
        assert!(is_safe_segment(&"a".repeat(255)));
        assert!(!is_safe_segment(&"a".repeat(256)));
        assert!(!is_safe_segment(""));
        assert!(!is_safe_segment("."));
        assert!(!is_safe_segment(".."));
        assert!(!is_safe_segment("a/b"));
        assert!(!is_safe_segment("é"));
    }

    #[test]
    fn error_repeats_a_short_key() {
        let err = validate_key(&"é".repeat(10_000))
            .err()
            .map(|e| e.to_string());
        let text = err.unwrap_or_default();
        assert!(text.len() < 400, "{text}");
    }

    #[test]
    fn prefixes() {
        assert!(matches!(prefix_path(""), Ok(None)));
        assert!(matches!(prefix_path("a/b/"), Ok(Some(p)) if p.as_ref() == "a/b"));
        assert!(prefix_path("a//").is_err());
        assert!(prefix_path("/").is_err());
    }
}
