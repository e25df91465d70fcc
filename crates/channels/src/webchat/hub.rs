//! Live streams of connected visitors, by contact. With a shared store, pushes go through
//! its fanout so a visitor whose page is connected to another instance gets them too; a
//! visitor who is offline catches up from the store when the page reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::ChatEvent;
use concierge_domain::ContactId;
use concierge_store::{Fanout, Topic};

#[derive(Default)]
pub struct Hub {
    // A std Mutex: it is held only to look up or insert a sender, never across an await.
    streams: Arc<Mutex<HashMap<ContactId, broadcast::Sender<ChatEvent>>>>,
    fanout: OnceLock<Arc<dyn Fanout>>,
}

/// A push as it crosses instances.
#[derive(Serialize, Deserialize)]
struct Push {
    contact: ContactId,
    event: ChatEvent,
}

fn deliver(
    streams: &Mutex<HashMap<ContactId, broadcast::Sender<ChatEvent>>>,
    contact: &ContactId,
    event: ChatEvent,
) -> usize {
    let streams = streams.lock().unwrap_or_else(|e| e.into_inner());
    streams
        .get(contact)
        .and_then(|sender| sender.send(event).ok())
        .unwrap_or(0)
}

impl Hub {
    /// Sends pushes through the instances' fanout from now on. Must be called within a
    /// Tokio runtime: a task hands what the fanout hears to this process's open pages.
    pub fn connect(&self, fanout: Arc<dyn Fanout>) {
        if self.fanout.set(fanout.clone()).is_err() {
            return;
        }
        let streams = self.streams.clone();
        let mut heard = fanout.subscribe(Topic::Chat);
        tokio::spawn(async move {
            loop {
                match heard.recv().await {
                    Ok(payload) => match serde_json::from_str::<Push>(&payload) {
                        Ok(push) => {
                            deliver(&streams, &push.contact, push.event);
                        }
                        Err(e) => tracing::warn!(error = %e, "an unreadable web chat push"),
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "web chat pushes dropped: too many at once");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    pub fn subscribe(&self, contact: &ContactId) -> broadcast::Receiver<ChatEvent> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|_, sender| sender.receiver_count() > 0);
        streams
            .entry(contact.clone())
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Pushes an event to the contact's open pages, wherever they are connected.
    pub fn publish(&self, contact: &ContactId, event: ChatEvent) {
        if let Some(fanout) = self.fanout.get() {
            let push = Push {
                contact: contact.clone(),
                event,
            };
            match serde_json::to_string(&push) {
                Ok(payload) => fanout.publish(Topic::Chat, payload),
                Err(e) => tracing::warn!(error = %e, "a web chat push could not be encoded"),
            }
            return;
        }
        deliver(&self.streams, contact, event);
    }
}
