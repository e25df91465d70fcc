//! The live event streams open on this instance, by key (a web chat visitor, a concierge):
//! past a key's cap, a new stream closes the oldest one of that key. Each stream holds a
//! [`Slot`] while it lives; the slot's token ends the stream when it is replaced or when the
//! gateway stops, and dropping the slot takes it off the count.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

use concierge_telemetry::Metrics;

/// The open streams, shared by the handlers.
pub struct Streams {
    open: Mutex<HashMap<String, VecDeque<(u64, CancellationToken)>>>,
    next_id: AtomicU64,
    metrics: Metrics,
}

/// One open stream's place. Its token fires when the stream must end.
pub struct Slot {
    streams: Arc<Streams>,
    kind: &'static str,
    key: String,
    id: u64,
    ended: CancellationToken,
}

impl Streams {
    pub fn new(metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            metrics,
        })
    }

    /// Opens a stream of `kind` for `key`, closing the oldest ones of the key past `cap`.
    /// The slot's token is a child of `stop`, so it fires at shutdown too.
    pub fn open(
        self: &Arc<Self>,
        kind: &'static str,
        key: String,
        cap: usize,
        stop: &CancellationToken,
    ) -> Slot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ended = stop.child_token();
        let replaced: Vec<CancellationToken> = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            let of_key = open.entry(format!("{kind}:{key}")).or_default();
            of_key.push_back((id, ended.clone()));
            let excess = of_key.len().saturating_sub(cap.max(1));
            of_key.drain(..excess).map(|(_, token)| token).collect()
        };
        for token in replaced {
            self.metrics.stream_closed(kind, "replaced");
            token.cancel();
        }
        self.metrics.streams_open(kind, 1);
        Slot {
            streams: self.clone(),
            kind,
            key,
            id,
            ended,
        }
    }

    /// How many streams of `kind` are open for `key`.
    pub fn count(&self, kind: &str, key: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&format!("{kind}:{key}")).map_or(0, VecDeque::len)
    }
}

impl Slot {
    /// Fires when the stream must end: replaced, closed by the gateway, or at shutdown.
    pub fn ended(&self) -> CancellationToken {
        self.ended.clone()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Ends whatever still watches the stream (its presence heartbeat).
        self.ended.cancel();
        let name = format!("{}:{}", self.kind, self.key);
        let mut open = self
            .streams
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(of_key) = open.get_mut(&name) {
            of_key.retain(|(id, _)| *id != self.id);
            if of_key.is_empty() {
                open.remove(&name);
            }
        }
        self.streams.metrics.streams_open(self.kind, -1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_the_oldest_stream_of_the_key_is_closed() {
        let streams = Streams::new(Metrics::new());
        let stop = CancellationToken::new();
        let first = streams.open("chat", "a".into(), 2, &stop);
        let second = streams.open("chat", "a".into(), 2, &stop);
        let other = streams.open("chat", "b".into(), 2, &stop);
        assert!(!first.ended().is_cancelled());
        let third = streams.open("chat", "a".into(), 2, &stop);
        assert!(first.ended().is_cancelled());
        assert!(!second.ended().is_cancelled() && !third.ended().is_cancelled());
        assert!(!other.ended().is_cancelled());
        assert_eq!(streams.count("chat", "a"), 2);
        drop(first);
        assert_eq!(streams.count("chat", "a"), 2);
        drop((second, third));
        assert_eq!(streams.count("chat", "a"), 0);
        stop.cancel();
        assert!(other.ended().is_cancelled());
    }
}
