//! Storing a local file: a local store on the same file system takes the
//! file itself (a rename), any other store a streamed copy.

use std::io::{self, Read};
use std::path::Path;

use bytes::BytesMut;
use futures_util::stream;
use tokio::io::AsyncReadExt;

use super::keys::key_path;
use super::upload::Tally;
use super::{PutInfo, Storage, StorageError};

/// Bytes read at a time while hashing or copying a file.
const READ_SIZE: usize = 1 << 20;

impl Storage {
    /// Stores the local file at `path` under `key` and returns its size and
    /// hash, as [`Storage::put_stream`] would. A local store on the file
    /// system of `path` takes the file itself: it is hashed, then renamed
    /// into place (atomically, replacing an object under `key`), so that
    /// no byte is written twice, and `path` is gone afterwards. Any other
    /// store, or a failed rename, gets a streamed copy and `path` stays.
    /// Over `max_size`, nothing is stored ([`StorageError::TooLarge`]).
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        max_size: Option<u64>,
    ) -> Result<PutInfo, StorageError> {
        key_path(key)?;
        if let Some(root) = self.inner.local_root.clone() {
            let (from, to, key_owned) = (path.to_owned(), root.join(key), key.to_owned());
            let moved = tokio::task::spawn_blocking(move || {
                let info = hash_file(&from, max_size, &key_owned)?;
                Ok::<_, StorageError>(move_into(&from, &to).map(|()| info))
            })
            .await
            .map_err(|e| StorageError::Io(io::Error::other(e)))??;
            match moved {
                Ok(info) => {
                    tracing::debug!(key, size = info.size, "stored a file by renaming it");
                    return Ok(info);
                }
                Err(e) => {
                    tracing::debug!(key, error = %e, "could not rename the file into the store; copying it");
                    self.remove_empty_dirs(key).await;
                }
            }
        }
        let file = tokio::fs::File::open(path).await?;
        // Chunks read into fresh, uninitialised buffers (a zeroed vector
        // per chunk would cost a memset of every byte).
        let chunks = stream::try_unfold(file, |mut f| async move {
            let mut buf = BytesMut::with_capacity(READ_SIZE);
            while buf.len() < buf.capacity() {
                if f.read_buf(&mut buf).await? == 0 {
                    break;
                }
            }
            if buf.is_empty() {
                return Ok::<_, io::Error>(None);
            }
            Ok(Some((buf.freeze(), f)))
        });
        self.put_stream(key, Box::pin(chunks), max_size).await
    }
}

/// The size and hash of the file at `path`, at most `max_size` bytes.
fn hash_file(path: &Path, max_size: Option<u64>, key: &str) -> Result<PutInfo, StorageError> {
    let mut file = std::fs::File::open(path)?;
    let mut tally = Tally::new(max_size);
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        tally.accept_slice(&buf[..n])?;
    }
    Ok(tally.finish(key))
}

/// Renames `from` to `to`, creating the directories of `to`; the file is
/// made readable as the store's own files are (a temporary file is not).
fn move_into(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(from, std::fs::Permissions::from_mode(0o644))?;
    }
    std::fs::rename(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::S3Settings;

    fn local() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::from_url(
            &format!("file://{}", dir.path().join("store").display()),
            &S3Settings::default(),
        )
        .unwrap();
        (dir, storage)
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 253) as u8).collect()
    }

    #[tokio::test]
    async fn a_local_store_takes_the_file_itself() {
        let (dir, storage) = local();
        let data = bytes(3 * READ_SIZE + 17);
        let path = dir.path().join("archive.tmp");
        std::fs::write(&path, &data).unwrap();
        let info = storage
            .put_file("transfers/t/1/a.zip", &path, None)
            .await
            .unwrap();
        assert!(!path.exists(), "the file was renamed, not copied");
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(info.blake2b, *blake2b_simd::blake2b(&data).as_array());
        let stored = storage.get_bytes("transfers/t/1/a.zip").await.unwrap();
        assert_eq!(&stored[..], &data[..]);
        let again = storage.head("transfers/t/1/a.zip").await.unwrap().unwrap();
        assert_eq!(again.size, data.len() as u64);
    }

    #[tokio::test]
    async fn other_stores_get_a_copy_and_the_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::from_url("memory://", &S3Settings::default()).unwrap();
        let data = bytes(READ_SIZE + 5);
        let path = dir.path().join("archive.tmp");
        std::fs::write(&path, &data).unwrap();
        let info = storage.put_file("a/b.zip", &path, None).await.unwrap();
        assert!(path.exists());
        assert_eq!(info.blake2b, *blake2b_simd::blake2b(&data).as_array());
        assert_eq!(&storage.get_bytes("a/b.zip").await.unwrap()[..], &data[..]);
    }

    #[tokio::test]
    async fn an_oversized_file_is_not_stored() {
        let (dir, storage) = local();
        let path = dir.path().join("archive.tmp");
        std::fs::write(&path, bytes(1000)).unwrap();
        let err = storage.put_file("a/b.zip", &path, Some(999)).await;
        assert!(
            matches!(err, Err(StorageError::TooLarge { limit: 999 })),
            "{err:?}"
        );
        assert!(storage.head("a/b.zip").await.unwrap().is_none());
        assert!(path.exists());
        let bad = storage.put_file("../escape", &path, None).await;
        assert!(
            matches!(bad, Err(StorageError::InvalidKey { .. })),
            "{bad:?}"
        );
    }
}
