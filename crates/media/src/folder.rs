//! The media store's objects as files under one folder: each written to a temporary name,
//! flushed to disk, then renamed into place, so a crash never leaves half a file under a
//! name that is read. Keys are made by the store from hex ids only, never from what a
//! sender chose.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

/// Tells the temporary files of concurrent writes apart.
static WRITES: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub(crate) struct Folder {
    root: PathBuf,
}

impl Folder {
    pub(crate) fn new(root: PathBuf) -> Folder {
        Folder { root }
    }

    fn path(&self, key: &[impl AsRef<str>]) -> PathBuf {
        key.iter()
            .fold(self.root.clone(), |path, part| path.join(part.as_ref()))
    }

    /// Writes `bytes` under `key`, replacing what was there.
    pub(crate) async fn put(&self, key: &[impl AsRef<str>], bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(key);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}-{n}.tmp", std::process::id()));
        let temporary = path.with_file_name(name);
        let written = async {
            let mut file = tokio::fs::File::create(&temporary).await?;
            file.write_all(bytes).await?;
            file.sync_all().await?;
            tokio::fs::rename(&temporary, &path).await
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&temporary).await;
        }
        written
    }

    /// The bytes under `key`, if any.
    pub(crate) async fn get(&self, key: &[impl AsRef<str>]) -> std::io::Result<Option<Bytes>> {
        match tokio::fs::read(self.path(key)).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether something is under `key`.
    pub(crate) async fn exists(&self, key: &[impl AsRef<str>]) -> std::io::Result<bool> {
        tokio::fs::try_exists(self.path(key)).await
    }

    /// The names under the folder `key` (none when it does not exist), temporary files left
    /// out.
    pub(crate) async fn names(&self, key: &[impl AsRef<str>]) -> std::io::Result<Vec<String>> {
        let mut entries = match tokio::fs::read_dir(self.path(key)).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            if let Some(name) = entry.file_name().to_str()
                && !name.ends_with(".tmp")
            {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    /// Removes what is under `key`; nothing there is no error.
    pub(crate) async fn delete(&self, key: &[impl AsRef<str>]) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every object one folder down under `top` (`top/ab/name`): its name and when it was
    /// written.
    pub(crate) async fn modified_under(
        &self,
        top: &str,
    ) -> std::io::Result<Vec<(String, std::time::SystemTime)>> {
        let mut found = Vec::new();
        for shard in self.names(&[top]).await? {
            let mut entries = match tokio::fs::read_dir(self.path(&[top, shard.as_str()])).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            while let Some(entry) = entries.next_entry().await? {
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if name.ends_with(".tmp") {
                    continue;
                }
                let modified = entry.metadata().await?.modified()?;
                found.push((name, modified));
            }
        }
        Ok(found)
    }
}
