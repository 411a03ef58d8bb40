//! Quarantine objects as local files: `<root>/<key>`, written whole (temp file,
//! fsync, rename), like an S3 `PutObject` of the same key.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use sightline_core::ports::QuarantineStore;
use sightline_core::retry::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum QuarantineFileError {
    #[error("quarantine key {0:?} is not a relative path inside the lake")]
    BadKey(String),
    #[error("writing quarantine file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Classify for QuarantineFileError {
    fn class(&self) -> ErrorClass {
        match self {
            QuarantineFileError::BadKey(_) => ErrorClass::Permanent,
            QuarantineFileError::Io { .. } => ErrorClass::Transient,
        }
    }
}

/// Writes quarantine objects under `root`.
#[derive(Debug, Clone)]
pub struct QuarantineDir {
    root: PathBuf,
}

impl QuarantineDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        QuarantineDir { root: root.into() }
    }

    fn path_for(&self, key: &str) -> Result<PathBuf, QuarantineFileError> {
        let rel = Path::new(key);
        let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
        if key.is_empty() || !plain {
            return Err(QuarantineFileError::BadKey(key.to_string()));
        }
        Ok(self.root.join(rel))
    }

    fn write(&self, key: &str, body: &[u8]) -> Result<(), QuarantineFileError> {
        let path = self.path_for(key)?;
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| QuarantineFileError::Io { path, source }
        };
        let dir = path
            .parent()
            .ok_or_else(|| QuarantineFileError::BadKey(key.to_string()))?;
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(body)
            .and_then(|()| file.sync_all())
            .map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(())
    }
}

impl QuarantineStore for QuarantineDir {
    type Error = QuarantineFileError;

    async fn put_object(&self, key: &str, body: Vec<u8>) -> Result<(), QuarantineFileError> {
        self.write(key, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_the_object_at_its_key_and_replaces_it_on_a_retry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = QuarantineDir::new(dir.path());
        let key = "quarantine/dt=2025-11-23/shardId-000000000000/49.jsonl";
        q.put_object(key, b"first\n".to_vec()).await.expect("put");
        q.put_object(key, b"second\n".to_vec()).await.expect("put");
        let body = fs::read_to_string(dir.path().join(key)).expect("read");
        assert_eq!(body, "second\n");
    }

    #[tokio::test]
    async fn refuses_keys_that_would_leave_the_lake() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = QuarantineDir::new(dir.path());
        for key in ["../escape.jsonl", "/etc/passwd", "", "a/../../b"] {
            let err = q.put_object(key, Vec::new()).await.expect_err(key);
            assert!(matches!(err, QuarantineFileError::BadKey(_)), "{key}");
            assert!(!err.is_retryable());
        }
    }
}
