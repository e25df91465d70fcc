//! Where media bytes are kept: content-addressed (the SHA-256 of the bytes names them) in a
//! folder, with what they are beside them, the smaller copies
//! made once, and a reference per conversation that holds them (which is what lets the API
//! show a concierge only the media of conversations they may see).
//!
//! Layout: `blobs/ab/abcd…` the bytes, `meta/ab/abcd….json` the [`StoredMedia`],
//! `llm/ab/abcd…` and `thumb/ab/abcd…` the fitted JPEGs (only for images that needed one),
//! `refs/abcd…/{conversation}` empty markers.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::bucket::{Bucket, BucketConfig};
use crate::folder::Folder;
use crate::objects::Objects;

use crate::picture::{self, LLM_LONG_SIDE, THUMB_LONG_SIDE};
use crate::{MediaError, sniff};
use concierge_domain::{ConversationId, MediaId, MediaKind, StoredMedia};

/// Which copy of kept media to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Original,
    /// Fitted for the LLM (the original when it needed nothing).
    ForLlm,
    /// The console's thumbnail (the original when it is small already).
    Thumbnail,
}

#[derive(Clone)]
pub struct MediaStore {
    objects: Objects,
    max_bytes: u64,
    /// Images decoded at once: one per core (a decoded 12 MP photo takes tens of MB).
    decoding: Arc<Semaphore>,
}

/// The key of `id`'s object in `top`: `top/ab/abcd…{suffix}`.
fn sharded(top: &str, id: &MediaId, suffix: &str) -> [String; 3] {
    let id = id.as_str();
    [
        top.to_string(),
        id[..2].to_string(),
        format!("{id}{suffix}"),
    ]
}

impl MediaStore {
    /// Media kept in `folder` (made if missing).
    pub fn in_folder(folder: &Path, max_bytes: u64) -> Result<MediaStore, MediaError> {
        std::fs::create_dir_all(folder).map_err(|e| {
            MediaError::Store(format!("cannot make the folder {}: {e}", folder.display()))
        })?;
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(MediaStore {
            objects: Objects::Folder(Folder::new(folder.to_path_buf())),
            max_bytes,
            decoding: Arc::new(Semaphore::new(cores.max(1))),
        })
    }

    /// Media kept in a bucket several instances share.
    pub fn in_bucket(
        config: &BucketConfig,
        max_bytes: u64,
        http: reqwest::Client,
    ) -> Result<MediaStore, MediaError> {
        let bucket = Bucket::new(config, http).map_err(MediaError::Store)?;
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(MediaStore {
            objects: Objects::Bucket(Box::new(bucket)),
            max_bytes,
            decoding: Arc::new(Semaphore::new(cores.max(1))),
        })
    }

    /// The largest media kept, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Keeps `bytes` (once, whoever sends them again) and says what they are: their type read
    /// from the bytes, an image's size, and its fitted copies made. Refuses what is too
    /// large, not allowed, or (for an image) does not decode.
    pub async fn keep(&self, bytes: Bytes, sent_as: MediaKind) -> Result<StoredMedia, MediaError> {
        if bytes.len() as u64 > self.max_bytes {
            return Err(MediaError::TooLarge {
                limit: self.max_bytes,
            });
        }
        let sniffed = sniff(&bytes)?;
        if !fits(sent_as, sniffed.kind) {
            return Err(MediaError::NotAllowed(format!(
                "a {} file sent as {}",
                sniffed.mime,
                sent_as.name()
            )));
        }
        let id = MediaId::parse(&hex::encode(Sha256::digest(&bytes))).map_err(MediaError::Store)?;
        if let Some(known) = self.stored(&id).await? {
            return Ok(known);
        }
        let mut stored = StoredMedia {
            id: id.clone(),
            mime: sniffed.mime.clone(),
            bytes: bytes.len() as u64,
            width: None,
            height: None,
            transcript: None,
            transcript_problem: None,
            name: None,
        };
        let mut copies = Vec::new();
        if sniffed.kind == MediaKind::Image {
            let source = bytes.clone();
            // A few decodes at a time: each holds a whole photo in memory.
            let _turn = self
                .decoding
                .acquire()
                .await
                .map_err(|e| MediaError::Store(e.to_string()))?;
            let made = tokio::task::spawn_blocking(move || {
                picture::prepare(&source, LLM_LONG_SIDE, THUMB_LONG_SIDE)
            })
            .await
            .map_err(|e| MediaError::Unreadable(format!("the image decoder failed: {e}")))??;
            let picture::Prepared { size, llm, thumb } = made;
            if let Some((w, h)) = size {
                stored.width = Some(w);
                stored.height = Some(h);
            }
            if let Some(llm) = llm {
                copies.push((sharded("llm", &id, ""), llm));
            }
            if let Some(thumb) = thumb {
                copies.push((sharded("thumb", &id, ""), thumb));
            }
        }
        self.objects.put(&sharded("blobs", &id, ""), &bytes).await?;
        for (path, copy) in copies {
            self.objects.put(&path, &copy).await?;
        }
        // What the bytes are comes last: kept media is only ever read through it, so a crash
        // before it leaves nothing half-kept (the next download writes the same files).
        let meta = serde_json::to_vec(&stored).map_err(|e| MediaError::Store(e.to_string()))?;
        self.objects
            .put(&sharded("meta", &id, ".json"), &meta)
            .await?;
        Ok(stored)
    }

    /// What is kept under `id`, if anything.
    pub async fn stored(&self, id: &MediaId) -> Result<Option<StoredMedia>, MediaError> {
        let Some(meta) = self.objects.get(&sharded("meta", id, ".json")).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&meta)
            .map(Some)
            .map_err(|e| MediaError::Store(format!("the record of media {id} is corrupt: {e}")))
    }

    /// Records that `conversation` holds media `id`.
    pub async fn link(
        &self,
        id: &MediaId,
        conversation: &ConversationId,
    ) -> Result<(), MediaError> {
        let key = ["refs", id.as_str(), conversation.as_str()];
        if !self.objects.exists(&key).await? {
            self.objects.put(&key, b"").await?;
        }
        Ok(())
    }

    /// Whether `conversation` holds media `id`.
    pub async fn linked(
        &self,
        id: &MediaId,
        conversation: &ConversationId,
    ) -> Result<bool, MediaError> {
        let key = ["refs", id.as_str(), conversation.as_str()];
        Ok(self.objects.exists(&key).await?)
    }

    /// The conversations that hold media `id`.
    pub async fn conversations(&self, id: &MediaId) -> Result<Vec<ConversationId>, MediaError> {
        let names = self.objects.names(&["refs", id.as_str()]).await?;
        Ok(names
            .into_iter()
            .filter_map(|name| ConversationId::parse(name).ok())
            .collect())
    }

    /// Deletes every file kept before `cutoff` (`[media] retention_days`), with its copies
    /// and its references; returns how many. Its record goes first: from then on the file
    /// reads as not kept, so a sweep stopped halfway leaves nothing that reads half there.
    pub async fn sweep(&self, cutoff: std::time::SystemTime) -> Result<usize, MediaError> {
        let mut swept = 0;
        for (name, written) in self.objects.modified_under("meta").await? {
            let Some(id) = name
                .strip_suffix(".json")
                .and_then(|id| MediaId::parse(id).ok())
            else {
                continue;
            };
            if written >= cutoff {
                continue;
            }
            self.objects.delete(&sharded("meta", &id, ".json")).await?;
            for top in ["llm", "thumb", "blobs"] {
                self.objects.delete(&sharded(top, &id, "")).await?;
            }
            for holder in self.objects.names(&["refs", id.as_str()]).await? {
                self.objects
                    .delete(&["refs", id.as_str(), holder.as_str()])
                    .await?;
            }
            swept += 1;
        }
        Ok(swept)
    }

    /// The bytes of `variant` of media `id` and their type, if it is kept.
    pub async fn read(
        &self,
        id: &MediaId,
        variant: Variant,
    ) -> Result<Option<(Bytes, String)>, MediaError> {
        let Some(stored) = self.stored(id).await? else {
            return Ok(None);
        };
        let copy = match variant {
            Variant::Original => None,
            Variant::ForLlm => Some("llm"),
            Variant::Thumbnail => Some("thumb"),
        };
        if let Some(top) = copy
            && let Some(bytes) = self.objects.get(&sharded(top, id, "")).await?
        {
            return Ok(Some((bytes, "image/jpeg".to_string())));
        }
        Ok(self
            .objects
            .get(&sharded("blobs", id, ""))
            .await?
            .map(|bytes| (bytes, stored.mime)))
    }
}

/// Whether bytes of kind `found` may be kept as a message of kind `sent_as`: a photo must be
/// an image (a page named `photo.jpg` is not one), a voice note audio (or audio in a video
/// container); a document may be any kind kept.
fn fits(sent_as: MediaKind, found: MediaKind) -> bool {
    match sent_as {
        MediaKind::Document => true,
        MediaKind::Image | MediaKind::Sticker => found == MediaKind::Image,
        MediaKind::Audio => matches!(found, MediaKind::Audio | MediaKind::Video),
        MediaKind::Video => found == MediaKind::Video,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::picture::tests::png;

    fn conversation(n: u8) -> ConversationId {
        ConversationId::parse(format!("{n:02x}").repeat(16)).unwrap()
    }

    #[tokio::test]
    async fn media_is_kept_once_by_its_bytes_with_its_fitted_copies() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::in_folder(dir.path(), 1 << 24).unwrap();
        let photo = Bytes::from(png(2000, 1000));
        let stored = store.keep(photo.clone(), MediaKind::Image).await.unwrap();
        assert_eq!(stored.mime, "image/png");
        assert_eq!((stored.width, stored.height), (Some(2000), Some(1000)));
        assert_eq!(stored.bytes, photo.len() as u64);
        assert_eq!(
            store.keep(photo.clone(), MediaKind::Image).await.unwrap(),
            stored,
            "kept once"
        );
        let (original, mime) = store
            .read(&stored.id, Variant::Original)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((original, mime.as_str()), (photo, "image/png"));
        let (llm, mime) = store
            .read(&stored.id, Variant::ForLlm)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(mime, "image/jpeg");
        assert_eq!(picture::dimensions(&llm).unwrap(), Some((1568, 784)));
        let (thumb, _) = store
            .read(&stored.id, Variant::Thumbnail)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(picture::dimensions(&thumb).unwrap(), Some((320, 160)));

        assert!(!store.linked(&stored.id, &conversation(1)).await.unwrap());
        store.link(&stored.id, &conversation(1)).await.unwrap();
        store.link(&stored.id, &conversation(2)).await.unwrap();
        assert!(store.linked(&stored.id, &conversation(1)).await.unwrap());
        let mut holders = store.conversations(&stored.id).await.unwrap();
        holders.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(holders, vec![conversation(1), conversation(2)]);
    }

    #[tokio::test]
    async fn a_sweep_deletes_what_is_past_retention_with_its_copies_and_references() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::in_folder(dir.path(), 1 << 24).unwrap();
        let old = store
            .keep(Bytes::from(png(1800, 900)), MediaKind::Image)
            .await
            .unwrap();
        let new = store
            .keep(Bytes::from(png(40, 30)), MediaKind::Image)
            .await
            .unwrap();
        store.link(&old.id, &conversation(1)).await.unwrap();
        store.link(&new.id, &conversation(1)).await.unwrap();
        let ten_days = std::time::Duration::from_secs(10 * 24 * 3600);
        let then = std::time::SystemTime::now() - ten_days;
        let id = old.id.as_str();
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(format!("meta/{}/{id}.json", &id[..2])))
            .unwrap()
            .set_modified(then)
            .unwrap();
        let cutoff = std::time::SystemTime::now() - ten_days / 2;
        assert_eq!(store.sweep(cutoff).await.unwrap(), 1);
        assert!(store.stored(&old.id).await.unwrap().is_none());
        assert!(
            store
                .read(&old.id, Variant::Original)
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.conversations(&old.id).await.unwrap().is_empty());
        for top in ["blobs", "llm", "thumb"] {
            assert!(
                !dir.path().join(format!("{top}/{}/{id}", &id[..2])).exists(),
                "{top}"
            );
        }
        assert!(
            store.stored(&new.id).await.unwrap().is_some(),
            "the recent one stays"
        );
        assert!(store.linked(&new.id, &conversation(1)).await.unwrap());
        assert_eq!(store.sweep(cutoff).await.unwrap(), 0, "nothing twice");
    }

    #[tokio::test]
    async fn too_large_not_allowed_and_unknown_media_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = MediaStore::in_folder(dir.path(), 1000).unwrap();
        assert_eq!(
            store
                .keep(Bytes::from(vec![b'a'; 1001]), MediaKind::Document)
                .await,
            Err(MediaError::TooLarge { limit: 1000 })
        );
        assert!(matches!(
            store
                .keep(
                    Bytes::from_static(b"<svg onload=alert(1)>"),
                    MediaKind::Image
                )
                .await,
            Err(MediaError::NotAllowed(_))
        ));
        assert!(matches!(
            store
                .keep(Bytes::from_static(b"a receipt, in words"), MediaKind::Image)
                .await,
            Err(MediaError::NotAllowed(why)) if why.contains("text/plain file sent as image")
        ));
        assert!(
            store
                .keep(
                    Bytes::from_static(b"a receipt, in words"),
                    MediaKind::Document
                )
                .await
                .is_ok()
        );
        let unknown = MediaId::parse(&"0".repeat(64)).unwrap();
        assert_eq!(store.read(&unknown, Variant::Original).await.unwrap(), None);
        assert!(store.conversations(&unknown).await.unwrap().is_empty());
    }
}
