//! A turn's media, fetched before the turn is decided: downloaded from the platform (after
//! the webhook was acknowledged, never in it), kept by the media store, and recorded on its
//! message, within a bounded wait. A crash before the turn completes loses nothing: the
//! event is taken again at restart and its media fetched again (kept once, by its bytes).

use std::sync::Arc;
use std::time::Duration;

use concierge_channels::{MediaError as FetchError, Registry};
use concierge_domain::{
    ChannelId, Content, ConversationId, EventKind, KeptMedia, MediaId, MediaKind, MediaRef,
    MessageId, StoredMedia,
};
use concierge_media::{MediaError, MediaStore, Transcriber, Variant};
use concierge_store::{Conversations, InboxEntry};
use concierge_telemetry::Metrics;

/// Tries of one download (a platform's 5xx or a dropped connection is tried again).
const TRIES: u32 = 4;
/// The wait before the second try; doubled for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// One try's time limit: a download past the turn's wait goes on in the background, within
/// this.
const TRY_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries of recording the outcome on the message.
const RECORD_TRIES: u32 = 5;

/// Fetches the media of the turns' messages.
#[derive(Clone)]
pub struct MediaIntake {
    channels: Registry,
    store: MediaStore,
    /// For recording what became of a message's media.
    conversations: Arc<dyn Conversations>,
    wait: Duration,
    metrics: Metrics,
    /// Puts voice notes into words; `None`: none is configured.
    transcriber: Option<Transcriber>,
}

impl MediaIntake {
    pub fn new(
        channels: Registry,
        store: MediaStore,
        conversations: Arc<dyn Conversations>,
        wait: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            channels,
            store,
            conversations,
            wait,
            metrics,
            transcriber: None,
        }
    }

    /// Transcribes customers' voice notes (`[transcription]`).
    pub fn with_transcriber(mut self, transcriber: Transcriber) -> Self {
        self.transcriber = Some(transcriber);
        self
    }

    /// Fetches the media of the burst's messages not fetched yet, at once, and writes what
    /// became of each into its entry (and, from the download, into its stored message).
    /// Waits at most `wait` in all: a download that takes longer goes on and records its
    /// outcome when done, and this turn reads the media as still downloading.
    pub async fn prepare(&self, burst: &mut [InboxEntry]) {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut jobs = Vec::new();
        for (index, entry) in burst.iter().enumerate() {
            let EventKind::Message(message) = &entry.event.kind else {
                continue;
            };
            let Content::Media {
                kind,
                media,
                kept: None,
                ..
            } = &message.content
            else {
                continue;
            };
            let job = self.clone().fetch(
                entry.event.channel.clone(),
                *kind,
                media.clone(),
                entry.conversation.clone(),
                entry.message,
            );
            jobs.push((index, tokio::spawn(job)));
        }
        for (index, job) in jobs {
            let outcome = match tokio::time::timeout_at(deadline, job).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "a media download stopped abnormally");
                    KeptMedia::Unavailable {
                        reason: "the download failed".to_string(),
                    }
                }
                Err(_) => {
                    self.metrics.media_late();
                    tracing::info!(
                        wait_ms = self.wait.as_millis() as u64,
                        "the media is still downloading: the turn goes on without it"
                    );
                    KeptMedia::Unavailable {
                        reason: "still downloading when this answer was written".to_string(),
                    }
                }
            };
            if let EventKind::Message(message) = &mut burst[index].event.kind
                && let Some(content) = message.content.with_kept(outcome)
            {
                message.content = content;
            }
        }
    }

    /// Downloads and keeps one media reference, records the outcome on its message, and
    /// returns it.
    async fn fetch(
        self,
        channel: ChannelId,
        kind: MediaKind,
        media: MediaRef,
        conversation: ConversationId,
        message: Option<MessageId>,
    ) -> KeptMedia {
        let fetched = match media.kept_id() {
            Some(id) => self.uploaded(&id, &conversation).await,
            None => self.download(&channel, &media).await,
        };
        let (outcome, label, bytes) = match fetched {
            Ok(bytes) => match self.store.keep(bytes.clone(), kind).await {
                Ok(mut stored) => match self.store.link(&stored.id, &conversation).await {
                    Ok(()) => {
                        if kind == MediaKind::Audio {
                            self.transcribe(&mut stored, bytes).await;
                        }
                        let size = stored.bytes;
                        (KeptMedia::Stored(stored), "kept", size)
                    }
                    Err(e) => unavailable(&e, "store_error"),
                },
                Err(e) => {
                    let label = match &e {
                        MediaError::TooLarge { .. } => "too_large",
                        MediaError::NotAllowed(_) => "not_allowed",
                        MediaError::Unreadable(_) => "unreadable",
                        MediaError::Store(_) => "store_error",
                    };
                    unavailable(&e, label)
                }
            },
            Err(e) => {
                let label = match &e {
                    FetchError::Unsupported => "unsupported",
                    FetchError::TooLarge { .. } => "too_large",
                    FetchError::NotFound => "gone",
                    FetchError::Refused(_) => "refused",
                    FetchError::Failed(_) => "failed",
                };
                unavailable(&e, label)
            }
        };
        if label != "kept" {
            tracing::warn!(%channel, outcome = label, "a customer's media could not be kept");
        }
        self.metrics.media_download(channel.as_str(), label, bytes);
        if let Some(message) = message {
            self.record(message, &outcome).await;
        }
        outcome
    }

    /// Puts a kept voice note into words, or says why it could not be.
    async fn transcribe(&self, stored: &mut StoredMedia, audio: bytes::Bytes) {
        let Some(transcriber) = &self.transcriber else {
            return;
        };
        let started = std::time::Instant::now();
        let result = transcriber.transcribe(audio, &stored.mime).await;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(words) => {
                self.metrics.transcription("ok", seconds);
                stored.transcript = Some(words);
            }
            Err(e) => {
                self.metrics.transcription(e.kind(), seconds);
                tracing::warn!(error = %e, "a voice note could not be transcribed");
                stored.transcript_problem = Some(e.to_string());
            }
        }
    }

    /// The bytes of a file the customer uploaded to the gateway itself (the web chat's): only
    /// one their conversation holds, so a message cannot name anyone else's.
    async fn uploaded(
        &self,
        id: &MediaId,
        conversation: &ConversationId,
    ) -> Result<bytes::Bytes, FetchError> {
        let failed = |e: MediaError| FetchError::Failed(e.to_string());
        if !self.store.linked(id, conversation).await.map_err(failed)? {
            return Err(FetchError::Refused(
                "not a file uploaded in this conversation".to_string(),
            ));
        }
        match self
            .store
            .read(id, Variant::Original)
            .await
            .map_err(failed)?
        {
            Some((bytes, _)) => Ok(bytes),
            None => Err(FetchError::NotFound),
        }
    }

    /// The bytes behind `media`, tried again on transient failures.
    async fn download(
        &self,
        channel: &ChannelId,
        media: &MediaRef,
    ) -> Result<bytes::Bytes, FetchError> {
        let Some(adapter) = self.channels.adapter(channel).cloned() else {
            return Err(FetchError::Failed(format!(
                "the channel `{channel}` is no longer configured"
            )));
        };
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            let result = match tokio::time::timeout(TRY_TIMEOUT, adapter.fetch_media(media)).await {
                Ok(result) => result,
                Err(_) => Err(FetchError::Failed(format!(
                    "no answer within {TRY_TIMEOUT:?}"
                ))),
            };
            match result {
                Ok(fetched) => return Ok(fetched.bytes),
                Err(FetchError::Failed(why)) if tries < TRIES => {
                    tracing::info!(%channel, tries, why, "a media download failed; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the outcome on the message, trying again while the store is away: a message
    /// left without it shows its media as not fetched, nothing worse.
    async fn record(&self, message: MessageId, outcome: &KeptMedia) {
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=RECORD_TRIES {
            match self.conversations.set_media(message, outcome).await {
                Ok(_) => return,
                Err(e) if attempt == RECORD_TRIES => {
                    tracing::warn!(error = %e, %message, "cannot record a message's media");
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

/// Not kept, with the reason a concierge (and the model) reads.
fn unavailable(e: &dyn std::fmt::Display, label: &'static str) -> (KeptMedia, &'static str, u64) {
    (
        KeptMedia::Unavailable {
            reason: e.to_string(),
        },
        label,
        0,
    )
}
