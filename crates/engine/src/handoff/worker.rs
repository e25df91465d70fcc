//! The queue's clock: every second it marks handoffs whose first-response SLA ran out
//! (priority raised, an event for the consoles) and offers waiting threads to the
//! longest-idle online concierge of their team with free capacity.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ConsoleEvent, Desk, EventKind, entry_team, owned_by};
use concierge_domain::{Priority, ThreadState, now_millis};
use concierge_store::{NewAudit, StoreError};
use concierge_telemetry::Metrics;

const TICK: Duration = Duration::from_secs(1);

pub async fn run(desk: Arc<Desk>, metrics: Metrics, shutdown: CancellationToken) {
    loop {
        if let Err(e) = tick(&desk, &metrics).await {
            tracing::warn!(error = %e, "the handoff queue's clock could not run; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// One pass: SLA breaches, then offers.
pub async fn tick(desk: &Desk, metrics: &Metrics) -> Result<(), StoreError> {
    let now = now_millis();
    for breach in desk.queue.sla_breaches(now).await? {
        tracing::info!(conversation = %breach.conversation, priority = %breach.priority, "first-response SLA breached; priority raised");
        metrics.sla_breached();
        desk.queue
            .audit(NewAudit {
                actor: "gateway".to_string(),
                action: "sla_breached".to_string(),
                conversation: Some(breach.conversation.clone()),
                detail: format!("priority raised to {}", breach.priority),
            })
            .await?;
        let mut event = ConsoleEvent::new(EventKind::SlaBreached, breach.conversation, breach.team);
        event.priority = Some(breach.priority);
        desk.events.publish(event);
    }
    offer_waiting(desk, metrics, now).await
}

async fn offer_waiting(desk: &Desk, metrics: &Metrics, now: i64) -> Result<(), StoreError> {
    let queue = desk.queue.queue().await?;
    let waiting = queue
        .iter()
        .filter(|e| matches!(e.conversation.thread, ThreadState::Queued { .. }))
        .count();
    metrics.queue_sizes(waiting as i64, (queue.len() - waiting) as i64);
    if desk.concierges.is_empty() {
        return Ok(());
    }
    let presence = desk.queue.presence().await?;
    let mut waiting: Vec<_> = queue
        .iter()
        .filter(|e| matches!(e.conversation.thread, ThreadState::Queued { .. }))
        .filter_map(|e| e.handoff.as_ref().map(|h| (e, h)))
        .filter(|(_, h)| h.offer_until.is_none_or(|until| until <= now))
        .collect();
    waiting.sort_by_key(|(_, h)| {
        (
            std::cmp::Reverse(Priority::of(h.priority.as_deref())),
            h.created_at,
        )
    });
    // Threads offered and not yet answered count against a concierge's capacity.
    let mut load: Vec<(String, usize)> = desk
        .concierges
        .iter()
        .map(|c| {
            let offered = queue
                .iter()
                .filter_map(|e| e.handoff.as_ref())
                .filter(|h| {
                    h.offered_to.as_deref() == Some(&c.name)
                        && h.offer_until.is_some_and(|u| u > now)
                })
                .count();
            (c.name.clone(), owned_by(&queue, &c.name) + offered)
        })
        .collect();
    for (entry, handoff) in waiting {
        // A handoff with no team, or one no longer configured, waits for the default team.
        let team = desk.team(entry_team(entry).map(String::as_str));
        let team_name = &team.name;
        if !desk.is_open(team, now) {
            continue;
        }
        let candidates: Vec<_> = desk
            .concierges
            .iter()
            .filter(|c| c.in_team(team_name))
            .filter_map(|c| {
                let p = presence.iter().find(|p| p.concierge == c.name)?;
                let busy = load
                    .iter()
                    .find(|(n, _)| *n == c.name)
                    .map_or(0, |(_, l)| *l);
                (Desk::is_online(p, now) && busy < c.capacity).then_some((c, p.idle_since))
            })
            .collect();
        // The one who let the last offer lapse goes last.
        let best = candidates
            .iter()
            .filter(|(c, _)| handoff.offered_to.as_deref() != Some(&c.name))
            .min_by_key(|(_, idle)| *idle)
            .or_else(|| candidates.iter().min_by_key(|(_, idle)| *idle));
        let Some((concierge, _)) = best else {
            continue;
        };
        let offer_ms = i64::try_from(desk.settings.offer_secs.max(1).saturating_mul(1000))
            .unwrap_or(i64::MAX / 4);
        let until = now.saturating_add(offer_ms);
        if desk
            .queue
            .offer(&handoff.id, &concierge.name, now, until)
            .await?
        {
            if let Some((_, l)) = load.iter_mut().find(|(n, _)| *n == concierge.name) {
                *l += 1;
            }
            let event = ConsoleEvent::new(
                EventKind::Offered,
                entry.conversation.id.clone(),
                Some(team_name.clone()),
            )
            .by(concierge.name.clone());
            desk.events.publish(event);
        }
    }
    Ok(())
}
