//! The web chat's budget of new visitors per client address. A visitor key is free to mint,
//! so one client could start any number of conversations; past its channel's
//! `new_conversations_per_minute_per_ip`, the messages of a visitor not admitted yet are
//! marked as over the budget before they are stored: kept as usual, answered with the
//! holding reply instead of the agents (see `concierge_engine::orchestrator::budgets`).
//!
//! The address is the connection's peer (no proxy header is trusted). A visitor once
//! admitted stays admitted for an hour, on this instance: in memory, like the other budgets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use concierge_domain::{ChannelId, ContactId, EventKind, InboundEvent};
use concierge_engine::orchestrator::ContactRate;
use concierge_engine::orchestrator::budgets::NEW_CONVERSATIONS_PER_IP;

/// How long an admitted visitor is not counted again.
const ADMITTED_FOR: Duration = Duration::from_secs(3600);

/// The admitted visitors are swept of expired ones once they grow past this, or past twice
/// their number after the last sweep.
const SWEEP_AT_LEAST: usize = 1024;

/// Every web chat channel's budget, by channel.
#[derive(Default)]
pub struct VisitorBudgets {
    channels: HashMap<ChannelId, VisitorBudget>,
}

impl VisitorBudgets {
    /// From each web chat channel's `new_conversations_per_minute_per_ip` (0: none).
    pub fn new(per_channel: impl IntoIterator<Item = (ChannelId, u32)>) -> Self {
        Self {
            channels: per_channel
                .into_iter()
                .filter_map(|(channel, per_minute)| {
                    Some((channel, VisitorBudget::new(per_minute)?))
                })
                .collect(),
        }
    }

    /// Marks the messages of `events` that come past their channel's budget from `peer`.
    /// Without a known peer nothing is marked.
    pub fn mark(&self, peer: Option<IpAddr>, events: &mut [InboundEvent], now: Instant) {
        let Some(peer) = peer else {
            return;
        };
        for event in events {
            let Some(budget) = self.channels.get(&event.channel) else {
                continue;
            };
            if let EventKind::Message(message) = &mut event.kind
                && !budget.admit(peer, &event.contact, now)
            {
                message.over_budget = Some(NEW_CONVERSATIONS_PER_IP.to_string());
            }
        }
    }
}

struct VisitorBudget {
    rate: ContactRate<IpAddr>,
    // A std mutex: held for a map operation, never across an `.await`.
    admitted: Mutex<Admitted>,
}

struct Admitted {
    map: HashMap<ContactId, Instant>,
    sweep_at: usize,
}

impl VisitorBudget {
    fn new(per_minute: u32) -> Option<Self> {
        Some(Self {
            rate: ContactRate::new(per_minute, per_minute)?,
            admitted: Mutex::new(Admitted {
                map: HashMap::new(),
                sweep_at: SWEEP_AT_LEAST,
            }),
        })
    }

    /// Whether the agents may answer `contact`: admitted within the hour, or now from the
    /// budget of `peer`.
    fn admit(&self, peer: IpAddr, contact: &ContactId, now: Instant) -> bool {
        let mut admitted = self.admitted.lock().unwrap_or_else(|e| e.into_inner());
        if admitted
            .map
            .get(contact)
            .is_some_and(|at| now.saturating_duration_since(*at) < ADMITTED_FOR)
        {
            return true;
        }
        if self.rate.try_take(&peer, now).is_err() {
            return false;
        }
        if admitted.map.len() >= admitted.sweep_at {
            admitted
                .map
                .retain(|_, at| now.saturating_duration_since(*at) < ADMITTED_FOR);
            admitted.sweep_at = SWEEP_AT_LEAST.max(admitted.map.len() * 2);
        }
        admitted.map.insert(contact.clone(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierge_domain::{Content, EventId, InboundMessage, PlatformMessageId};

    fn message(contact: &str) -> InboundEvent {
        InboundEvent {
            channel: ChannelId::parse("web").unwrap(),
            event_id: EventId::parse(format!("{contact}:1")).unwrap(),
            contact: ContactId::parse(contact).unwrap(),
            aliases: Vec::new(),
            at: 0,
            kind: EventKind::Message(InboundMessage {
                platform_id: PlatformMessageId::parse(format!("{contact}:1")).unwrap(),
                content: Content::text("hi"),
                reply_to: None,
                display_name: None,
                over_budget: None,
            }),
        }
    }

    fn marked(event: &InboundEvent) -> bool {
        matches!(&event.kind, EventKind::Message(m) if m.over_budget.is_some())
    }

    #[test]
    fn new_visitors_past_the_budget_of_one_address_are_marked() {
        let budgets = VisitorBudgets::new([(ChannelId::parse("web").unwrap(), 2)]);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        let mut events: Vec<_> = ["v1", "v2", "v3"].map(message).into();
        budgets.mark(Some(a), &mut events, t0);
        assert_eq!(
            events.iter().map(marked).collect::<Vec<_>>(),
            [false, false, true]
        );
        // Admitted visitors stay admitted; the refused one is counted again.
        let mut again: Vec<_> = ["v1", "v3"].map(message).into();
        budgets.mark(Some(a), &mut again, t0);
        assert_eq!(again.iter().map(marked).collect::<Vec<_>>(), [false, true]);
        // Another address has its own budget; an unknown peer is not marked.
        let mut other = vec![message("v4")];
        budgets.mark(Some(b), &mut other, t0);
        assert!(!marked(&other[0]));
        let mut unknown = vec![message("v5")];
        budgets.mark(None, &mut unknown, t0);
        assert!(!marked(&unknown[0]));
        // A minute later the address has its budget back.
        let mut later = vec![message("v3")];
        budgets.mark(Some(a), &mut later, t0 + Duration::from_secs(60));
        assert!(!marked(&later[0]));
    }
}
