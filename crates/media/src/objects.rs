//! Where the media store's objects live: a folder on this machine, or a bucket every
//! instance shares; the store sees one set of operations either way.

use bytes::Bytes;

use crate::bucket::Bucket;
use crate::folder::Folder;

#[derive(Debug, Clone)]
pub(crate) enum Objects {
    Folder(Folder),
    Bucket(Box<Bucket>),
}

impl Objects {
    pub(crate) async fn put(&self, key: &[impl AsRef<str>], bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Objects::Folder(folder) => folder.put(key, bytes).await,
            Objects::Bucket(bucket) => bucket.put(key, bytes).await,
        }
    }

    pub(crate) async fn get(&self, key: &[impl AsRef<str>]) -> std::io::Result<Option<Bytes>> {
        match self {
            Objects::Folder(folder) => folder.get(key).await,
            Objects::Bucket(bucket) => bucket.get(key).await,
        }
    }

    pub(crate) async fn exists(&self, key: &[impl AsRef<str>]) -> std::io::Result<bool> {
        match self {
            Objects::Folder(folder) => folder.exists(key).await,
            Objects::Bucket(bucket) => bucket.exists(key).await,
        }
    }

    pub(crate) async fn names(&self, key: &[impl AsRef<str>]) -> std::io::Result<Vec<String>> {
        match self {
            Objects::Folder(folder) => folder.names(key).await,
            Objects::Bucket(bucket) => bucket.names(key).await,
        }
    }

    pub(crate) async fn delete(&self, key: &[impl AsRef<str>]) -> std::io::Result<()> {
        match self {
            Objects::Folder(folder) => folder.delete(key).await,
            Objects::Bucket(bucket) => bucket.delete(key).await,
        }
    }

    pub(crate) async fn modified_under(
        &self,
        top: &str,
    ) -> std::io::Result<Vec<(String, std::time::SystemTime)>> {
        match self {
            Objects::Folder(folder) => folder.modified_under(top).await,
            Objects::Bucket(bucket) => bucket.modified_under(top).await,
        }
    }
}
