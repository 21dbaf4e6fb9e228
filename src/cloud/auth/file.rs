//! Secrets kept in files: `token_file`, `secret_key_file`, `password_file`.
//!
//! Owns: reading such a file, trimming it, and re-reading it when another process replaces it
//! (size, mtime or inode changed) or when a 401 says the value went stale. It never writes the
//! file and never puts its content into an error.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::sync::Mutex;

use super::{AuthError, Secret};

#[derive(Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

struct Cached {
    stamp: FileStamp,
    value: Secret,
}

/// A secret in a file that another process may rotate.
pub struct SecretFile {
    method: &'static str,
    key: &'static str,
    path: PathBuf,
    cached: Mutex<Option<Cached>>,
}

impl SecretFile {
    /// The file `path`, configured as `key` of auth method `method` (both for messages).
    pub fn new(method: &'static str, key: &'static str, path: &Path) -> SecretFile {
        SecretFile {
            method,
            key,
            path: path.to_path_buf(),
            cached: Mutex::new(None),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current value: the cached one while the file's size, mtime and inode are unchanged,
    /// else the file re-read (trimmed). With `force` the file is re-read regardless.
    pub async fn read(&self, force: bool) -> Result<Secret, AuthError> {
        let mut cached = self.cached.lock().await;
        let unreadable = |source| AuthError::ReadFile {
            method: self.method,
            key: self.key,
            path: self.path.clone(),
            source,
        };
        let meta = tokio::fs::metadata(&self.path).await.map_err(unreadable)?;
        let stamp = FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            ino: std::os::unix::fs::MetadataExt::ino(&meta),
        };
        if !force
            && let Some(c) = cached.as_ref()
            && c.stamp == stamp
        {
            return Ok(c.value.clone());
        }
        let text = crate::files::read_capped_string(&self.path, crate::files::MAX_VALUE_FILE)
            .map_err(unreadable)?;
        let value = text.trim();
        if value.is_empty() {
            return Err(AuthError::EmptyFile {
                method: self.method,
                key: self.key,
                path: self.path.clone(),
            });
        }
        let value = Secret::new(value);
        *cached = Some(Cached {
            stamp,
            value: value.clone(),
        });
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_is_reread_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let file = SecretFile::new("token", "token_file", &path);
        assert_eq!(file.read(false).await.unwrap().expose(), "first");
        // Another process rotates it by rename, as a careful writer would.
        let tmp = dir.path().join("token.new");
        std::fs::write(&tmp, "second-token").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(file.read(false).await.unwrap().expose(), "second-token");
        std::fs::write(&path, "   \n").unwrap();
        let err = file.read(true).await.unwrap_err();
        assert!(matches!(err, AuthError::EmptyFile { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("auth method token: token_file {} is empty", path.display())
        );
        std::fs::remove_file(&path).unwrap();
        let err = file.read(false).await.unwrap_err();
        assert!(matches!(err, AuthError::ReadFile { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("auth method token: cannot read token_file"),
            "{err}"
        );
    }
}
