//! A picture or a file an agent sends by URL (`send_media`): fetched once by the gateway
//! (http or https only, no redirects followed, bounded in size and time), its type read from
//! its bytes, kept in the media store and linked to the conversation, so it leaves through
//! the outbox like a concierge's upload; what cannot be fetched is said in words instead.

use std::time::Duration;

use concierge_channels::outbound_http::read_media;
use concierge_domain::{Content, ConversationId, KeptMedia, MediaKind, MediaRef, clip_text};
use concierge_media::MediaStore;

/// How long one fetch may take, answer included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Fetches and keeps what agents send.
#[derive(Clone)]
pub struct MediaSender {
    store: MediaStore,
    /// Built to follow no redirect: a URL is fetched where it says, nowhere else.
    http: reqwest::Client,
}

impl MediaSender {
    /// `http` must not follow redirects (see [`MediaSender::client`]).
    pub fn new(store: MediaStore, http: reqwest::Client) -> MediaSender {
        MediaSender { store, http }
    }

    /// The client to fetch with: no redirects, no proxy from the environment, a timeout.
    pub fn client() -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
    }

    /// The content that sends `url` with its caption, or why it cannot be sent.
    pub async fn content(
        &self,
        conversation: &ConversationId,
        url: &str,
        caption: Option<String>,
    ) -> Result<Content, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("it could not be fetched ({})", e.without_url()))?;
        if response.status().is_redirection() {
            return Err(format!(
                "its address answered with a redirect (HTTP {}), which is not followed",
                response.status().as_u16()
            ));
        }
        let fetched = read_media(response, self.store.max_bytes(), None)
            .await
            .map_err(|e| e.to_string())?;
        let stored = self
            .store
            .keep(fetched.bytes, MediaKind::Document)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .link(&stored.id, conversation)
            .await
            .map_err(|e| e.to_string())?;
        let mut stored = stored;
        stored.name = url
            .split(['?', '#'])
            .next()
            .and_then(|path| path.rsplit('/').next())
            .filter(|name| !name.is_empty())
            .map(|name| clip_text(name, 120));
        Ok(Content::Media {
            kind: MediaKind::for_mime(&stored.mime),
            mime: Some(stored.mime.clone()),
            caption,
            media: MediaRef(stored.id.to_string()),
            kept: Some(KeptMedia::Stored(stored)),
        })
    }
}
