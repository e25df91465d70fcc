//! Live streams of connected visitors, by contact. In-process only: a visitor whose stream is
//! on another instance, or who is offline, catches up from the store when the page reconnects.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use super::ChatEvent;
use crate::domain::ContactId;

#[derive(Default)]
pub struct Hub {
    // A std Mutex: it is held only to look up or insert a sender, never across an await.
    streams: Mutex<HashMap<ContactId, broadcast::Sender<ChatEvent>>>,
}

impl Hub {
    pub fn subscribe(&self, contact: &ContactId) -> broadcast::Receiver<ChatEvent> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|_, sender| sender.receiver_count() > 0);
        streams
            .entry(contact.clone())
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Pushes an event to the contact's open pages; returns how many received it.
    pub fn publish(&self, contact: &ContactId, event: ChatEvent) -> usize {
        let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams
            .get(contact)
            .and_then(|sender| sender.send(event).ok())
            .unwrap_or(0)
    }
}
