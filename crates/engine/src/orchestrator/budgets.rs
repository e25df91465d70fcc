//! The budgets that bound what customers can make the agents spend, whoever they are: new
//! conversations a minute (in all, and per channel) and LLM calls a minute (in all). A
//! contact or conversation limit cannot bound them, as a web chat visitor key is free to mint.
//! A turn past a budget is not given to the agents: the customer gets the holding reply, the
//! thread stays with the bot, nothing is lost, and a later message within budget is answered
//! as usual.
//!
//! "New" is a conversation the agents have not answered yet (no LLM call recorded for it).
//! The buckets are the contact rate's (`super::throttle`), in memory, per gateway instance.

use std::collections::HashMap;
use std::time::Instant;

use super::throttle::ContactRate;
use concierge_domain::ChannelId;

/// The budget a web chat visitor's first messages went past at the edge, as the message
/// carries it (see [`concierge_domain::InboundMessage::over_budget`]).
pub const NEW_CONVERSATIONS_PER_IP: &str = "new_conversations_per_ip";
/// The deployment's new conversations a minute.
pub const NEW_CONVERSATIONS: &str = "new_conversations";
/// A channel's new conversations a minute.
pub const CHANNEL_NEW_CONVERSATIONS: &str = "channel_new_conversations";
/// The deployment's LLM calls a minute.
pub const LLM_CALLS: &str = "llm_calls";

/// The budgets, as configured; 0 is no limit.
#[derive(Debug, Clone, Default)]
pub struct BudgetSettings {
    /// `[orchestrator] new_conversations_per_minute`.
    pub new_conversations_per_minute: u32,
    /// Each channel file's `new_conversations_per_minute`.
    pub channel_new_conversations_per_minute: Vec<(ChannelId, u32)>,
    /// `[agents] llm_calls_per_minute`.
    pub llm_calls_per_minute: u32,
}

/// The live buckets. A bucket holds a minute's worth, so a quiet gateway takes a burst of a
/// whole minute's budget at once, then the steady rate.
pub struct Budgets {
    new_conversations: Option<ContactRate<()>>,
    channels: HashMap<ChannelId, ContactRate<()>>,
    llm_calls: Option<ContactRate<()>>,
}

impl Budgets {
    pub fn new(settings: &BudgetSettings) -> Self {
        let bucket = |per_minute: u32| ContactRate::new(per_minute, per_minute);
        Self {
            new_conversations: bucket(settings.new_conversations_per_minute),
            channels: settings
                .channel_new_conversations_per_minute
                .iter()
                .filter_map(|(channel, per_minute)| Some((channel.clone(), bucket(*per_minute)?)))
                .collect(),
            llm_calls: bucket(settings.llm_calls_per_minute),
        }
    }

    /// No budget at all.
    pub fn unlimited() -> Self {
        Self::new(&BudgetSettings::default())
    }

    /// Whether any new-conversation budget applies to `channel` (else the agent step need
    /// not find out whether the conversation is new).
    pub fn counts_new_conversations(&self, channel: &ChannelId) -> bool {
        self.new_conversations.is_some() || self.channels.contains_key(channel)
    }

    /// Lets a turn call the LLM, taking one LLM call (and one new conversation when it is
    /// one), or names the budget it is past. A budget that refuses takes nothing from the
    /// ones after it.
    pub fn admit(
        &self,
        channel: &ChannelId,
        new_conversation: bool,
        now: Instant,
    ) -> Result<(), &'static str> {
        if new_conversation {
            if let Some(rate) = self.channels.get(channel) {
                rate.try_take(&(), now)
                    .map_err(|_| CHANNEL_NEW_CONVERSATIONS)?;
            }
            if let Some(rate) = &self.new_conversations {
                rate.try_take(&(), now).map_err(|_| NEW_CONVERSATIONS)?;
            }
        }
        if let Some(rate) = &self.llm_calls {
            rate.try_take(&(), now).map_err(|_| LLM_CALLS)?;
        }
        Ok(())
    }

    /// Counts the LLM calls an admitted turn made beyond the one [`Budgets::admit`] took.
    pub fn spent(&self, llm_calls: u64, now: Instant) {
        if let Some(rate) = &self.llm_calls {
            rate.spend(&(), llm_calls.saturating_sub(1), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(id: &str) -> ChannelId {
        ChannelId::parse(id).unwrap()
    }

    #[test]
    fn new_conversations_are_counted_per_channel_and_in_all() {
        let budgets = Budgets::new(&BudgetSettings {
            new_conversations_per_minute: 3,
            channel_new_conversations_per_minute: vec![(channel("web"), 2)],
            llm_calls_per_minute: 0,
        });
        let t0 = Instant::now();
        let (web, wa) = (channel("web"), channel("wa"));
        assert_eq!(budgets.admit(&web, true, t0), Ok(()));
        assert_eq!(budgets.admit(&web, true, t0), Ok(()));
        assert_eq!(
            budgets.admit(&web, true, t0),
            Err(CHANNEL_NEW_CONVERSATIONS)
        );
        // Known conversations are not new ones.
        assert_eq!(budgets.admit(&web, false, t0), Ok(()));
        assert_eq!(budgets.admit(&wa, true, t0), Ok(()));
        assert_eq!(budgets.admit(&wa, true, t0), Err(NEW_CONVERSATIONS));
        assert!(budgets.counts_new_conversations(&wa));
        assert!(!Budgets::unlimited().counts_new_conversations(&wa));
    }

    #[test]
    fn every_llm_call_of_a_turn_is_counted() {
        let budgets = Budgets::new(&BudgetSettings {
            llm_calls_per_minute: 4,
            ..BudgetSettings::default()
        });
        let t0 = Instant::now();
        let web = channel("web");
        assert_eq!(budgets.admit(&web, true, t0), Ok(()));
        budgets.spent(3, t0);
        assert_eq!(budgets.admit(&web, false, t0), Ok(()));
        assert_eq!(budgets.admit(&web, false, t0), Err(LLM_CALLS));
    }
}
