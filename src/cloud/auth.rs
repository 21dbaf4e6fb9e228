//! Credentials for the API, and their refresh.
//!
//! Owns: reading the IAM token file (re-read when it changes, and once more after a 401) and
//! the [`Secret`] type whose `Debug`/`Display` never show the value. It adds credentials to a
//! request; it does not decide retries (that is `api`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::sync::Mutex;

/// A credential. Its `Debug` and `Display` print `<redacted>`, so it can sit in any struct
/// that gets logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for putting on the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why credentials could not be had. Names the method and the step; never the secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token file could not be read.
    #[error("auth method token: cannot read token_file {}", path.display())]
    ReadTokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("auth method token: token_file {} is empty", path.display())]
    EmptyTokenFile {
        /// The file.
        path: PathBuf,
    },
}

#[derive(Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

struct Cached {
    stamp: FileStamp,
    token: Secret,
}

/// The `token` method: an IAM token kept in a file that another process may rotate.
pub struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<Cached>>,
}

impl TokenFile {
    /// A token source reading `path`.
    pub fn new(path: &Path) -> TokenFile {
        TokenFile {
            path: path.to_path_buf(),
            cached: Mutex::new(None),
        }
    }

    /// The current token: the cached one while the file's size, mtime and inode are unchanged,
    /// else the file re-read. With `force`, the file is re-read regardless (after a 401).
    pub async fn token(&self, force: bool) -> Result<Secret, AuthError> {
        let mut cached = self.cached.lock().await;
        let meta =
            tokio::fs::metadata(&self.path)
                .await
                .map_err(|source| AuthError::ReadTokenFile {
                    path: self.path.clone(),
                    source,
                })?;
        let stamp = FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            ino: std::os::unix::fs::MetadataExt::ino(&meta),
        };
        if !force {
            if let Some(c) = cached.as_ref() {
                if c.stamp == stamp {
                    return Ok(c.token.clone());
                }
            }
        }
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|source| AuthError::ReadTokenFile {
                path: self.path.clone(),
                source,
            })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(AuthError::EmptyTokenFile {
                path: self.path.clone(),
            });
        }
        let token = Secret::new(token);
        *cached = Some(Cached {
            stamp,
            token: token.clone(),
        });
        Ok(token)
    }
}

/// The configured credentials.
pub enum Credentials {
    /// `method = "token"`.
    Token(TokenFile),
}

impl Credentials {
    /// The method's name as the config spells it, for error messages.
    pub fn method(&self) -> &'static str {
        match self {
            Credentials::Token(_) => "token",
        }
    }

    /// Adds the credentials to a request. `refresh` forces new credentials (after a 401).
    pub async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        refresh: bool,
    ) -> Result<reqwest::RequestBuilder, AuthError> {
        match self {
            Credentials::Token(file) => {
                let token = file.token(refresh).await?;
                Ok(request.header("X-Auth-Token", token.expose()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("MIIEhQYJKoZIhvcNAQcCoIIEdjCCBHICAQEx");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
    }

    #[tokio::test]
    async fn token_file_is_reread_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let file = TokenFile::new(&path);
        assert_eq!(file.token(false).await.unwrap().expose(), "first");
        // Another process rotates it by rename, as a careful writer would.
        let tmp = dir.path().join("token.new");
        std::fs::write(&tmp, "second-token").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(file.token(false).await.unwrap().expose(), "second-token");
        std::fs::write(&path, "   \n").unwrap();
        assert!(matches!(
            file.token(true).await,
            Err(AuthError::EmptyTokenFile { .. })
        ));
    }
}
