//! Bearer tokens: fixed, or read from a file and re-read when the file changes (the Kubernetes
//! ServiceAccount token convention: the kubelet rotates the projected file in place).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

/// Where the bearer token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    Static(String),
    File(PathBuf),
}

/// A token source with the file's last read value.
pub(crate) struct Token {
    source: TokenSource,
    cached: Mutex<Option<(SystemTime, String)>>,
}

impl Token {
    pub(crate) fn new(source: TokenSource) -> Self {
        Self {
            source,
            cached: Mutex::new(None),
        }
    }

    /// The current token (a file is re-read when its modification time changed).
    pub(crate) fn current(&self) -> Option<String> {
        match &self.source {
            TokenSource::Static(t) => Some(t.clone()),
            TokenSource::File(path) => {
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
                let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((at, value)) = cached.as_ref() {
                    if *at == modified {
                        return Some(value.clone());
                    }
                }
                let value = std::fs::read_to_string(path).ok()?.trim().to_string();
                *cached = Some((modified, value.clone()));
                Some(value)
            }
        }
    }

    /// Forgets the cached value (after a 401/403: the token may have rotated within the same
    /// modification time granularity).
    pub(crate) fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_re_read_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let token = Token::new(TokenSource::File(path.clone()));
        assert_eq!(token.current().as_deref(), Some("first"));
        // Rotate in place with a later modification time, as the kubelet does.
        std::fs::write(&path, "second\n").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(token.current().as_deref(), Some("second"));
        assert_eq!(
            Token::new(TokenSource::Static("s".into()))
                .current()
                .as_deref(),
            Some("s")
        );
    }
}
