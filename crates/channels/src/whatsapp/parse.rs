//! From a verified Cloud API notification to normalised events. A message or status that
//! cannot be read is skipped with a warning (its siblings in the batch still count); a type
//! we do not know becomes `Unsupported`.

use std::collections::HashMap;

use super::wire;
use crate::{ParseError, callback, status_report};
use concierge_domain::{
    ChannelFault, ChannelId, Choice, ContactCard, ContactId, Content, DeliveryStatus, EventId,
    EventKind, InboundEvent, InboundMessage, MediaKind, MediaRef, OrderItem, PlatformMessageId,
    now_millis,
};

/// The error codes that mean "the 24-hour customer service window is closed".
pub const WINDOW_CLOSED_CODES: &[i64] = &[131047];

/// The fault codes that mean "the number sends too fast": its throughput (130429), the
/// spam-rate limit (131048), the business account's rate limit (80007).
pub const RATE_LIMIT_CODES: &[&str] = &["130429", "131048", "80007"];

/// How long a number holds its sends after a rate-limit fault.
pub const RATE_LIMIT_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// Parses a notification for the phone number `phone_number_id`; changes for other numbers
/// of the same app are left to their own channel.
pub fn parse(
    channel: &ChannelId,
    phone_number_id: &str,
    body: &[u8],
) -> Result<Vec<InboundEvent>, ParseError> {
    let notification: wire::Notification = serde_json::from_slice(body).map_err(|e| {
        ParseError(format!(
            "not a Cloud API notification ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if notification.object != "whatsapp_business_account" {
        return Err(ParseError(format!(
            "unexpected object `{}`",
            notification.object.chars().take(40).collect::<String>()
        )));
    }
    let mut events = Vec::new();
    for change in notification.entry.iter().flat_map(|e| &e.changes) {
        if matches!(
            change.field.as_str(),
            "message_template_status_update" | "message_template_quality_update"
        ) {
            if let Some(value) = &change.value {
                events.extend(template_event(
                    channel,
                    phone_number_id,
                    &change.field,
                    value,
                ));
            }
            continue;
        }
        if change.field != "messages" {
            tracing::debug!(field = %change.field, "ignoring a webhook field we do not use");
            continue;
        }
        let Some(value) = &change.value else { continue };
        let for_us = value
            .metadata
            .as_ref()
            .is_none_or(|m| m.phone_number_id.is_empty() || m.phone_number_id == phone_number_id);
        if !for_us {
            // Meta posts every number of an app to the same URL: give each number a channel.
            tracing::warn!(%channel, "a change for another phone number of the app; no channel here takes it");
            continue;
        }
        let names = display_names(&value.contacts);
        for raw in &value.messages {
            match serde_json::from_value::<wire::Message>(raw.clone()) {
                Ok(message) => {
                    if let Some(event) = message_event(channel, &message, &names) {
                        events.push(event);
                    }
                }
                Err(e) => {
                    tracing::warn!(%channel, error = %e.classify_name(), "skipping a message we cannot read")
                }
            }
        }
        for raw in &value.errors {
            match serde_json::from_value::<wire::ApiError>(raw.clone()) {
                Ok(error) => events.extend(fault_event(channel, phone_number_id, &error)),
                Err(e) => {
                    tracing::warn!(%channel, error = %e.classify_name(), "skipping an error report we cannot read")
                }
            }
        }
        for raw in &value.statuses {
            match serde_json::from_value::<wire::Status>(raw.clone()) {
                Ok(status) => events.extend(status_events(channel, &status)),
                Err(e) => {
                    tracing::warn!(%channel, error = %e.classify_name(), "skipping a status we cannot read")
                }
            }
        }
    }
    Ok(events)
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        }
    }
}

/// The customer's ids: the business-scoped user id when Meta sends one (it stays the same
/// when the customer hides their number behind a username), else the phone number; and the
/// phone number as an alias when both came, so the store keeps one contact for the person
/// whichever id later events carry.
pub fn contact_ids(
    user_id: Option<&str>,
    phone: Option<&str>,
) -> Option<(ContactId, Vec<ContactId>)> {
    let user_id = user_id.filter(|s| !s.is_empty());
    let phone = phone.filter(|s| !s.is_empty());
    let primary = ContactId::parse(user_id.or(phone)?).ok()?;
    let aliases = match (user_id, phone) {
        (Some(_), Some(phone)) => ContactId::parse(phone).ok().into_iter().collect(),
        _ => Vec::new(),
    };
    Some((primary, aliases))
}

fn display_names(contacts: &[wire::Contact]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for contact in contacts {
        let Some(name) = contact
            .profile
            .as_ref()
            .and_then(|p| p.name.as_deref())
            .and_then(concierge_domain::display_name)
        else {
            continue;
        };
        for key in [contact.user_id.as_deref(), contact.wa_id.as_deref()]
            .into_iter()
            .flatten()
            .filter(|k| !k.is_empty())
        {
            names.insert(key.to_string(), name.clone());
        }
    }
    names
}

fn timestamp_millis(timestamp: Option<&str>) -> i64 {
    timestamp
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|s| s.checked_mul(1000))
        .unwrap_or_else(now_millis)
}

fn media(kind: MediaKind, media: &wire::Media) -> Content {
    Content::Media {
        kind,
        mime: media.mime_type.clone(),
        caption: media
            .caption
            .clone()
            .or_else(|| media.filename.clone())
            .filter(|c| !c.is_empty()),
        media: MediaRef(media.id.clone()),
        kept: None,
    }
}

fn content(message: &wire::Message) -> Content {
    let unsupported = || Content::Unsupported {
        kind: message.kind.chars().take(40).collect(),
    };
    match message.kind.as_str() {
        "text" => message.text.as_ref().map(|t| Content::text(t.body.clone())),
        "image" => message.image.as_ref().map(|m| media(MediaKind::Image, m)),
        "audio" => message.audio.as_ref().map(|m| media(MediaKind::Audio, m)),
        "video" => message.video.as_ref().map(|m| media(MediaKind::Video, m)),
        "document" => message
            .document
            .as_ref()
            .map(|m| media(MediaKind::Document, m)),
        "sticker" => message
            .sticker
            .as_ref()
            .map(|m| media(MediaKind::Sticker, m)),
        "location" => message.location.as_ref().map(|l| Content::Location {
            latitude: l.latitude,
            longitude: l.longitude,
            name: l.name.clone(),
            address: l.address.clone(),
        }),
        "interactive" => message.interactive.as_ref().and_then(|i| {
            if let Some(form) = &i.nfm_reply {
                return form_reply(form);
            }
            let reply = match i.kind.as_str() {
                "button_reply" => i.button_reply.as_ref(),
                "list_reply" => i.list_reply.as_ref(),
                _ => None,
            }?;
            Some(Content::Choice(Choice {
                id: reply.id.clone(),
                title: reply.title.clone(),
                description: reply.description.clone(),
                section: None,
            }))
        }),
        "button" => message.button.as_ref().map(|b| {
            Content::Choice(Choice::new(
                b.payload.clone().unwrap_or_else(|| b.text.clone()),
                b.text.clone(),
            ))
        }),
        "order" => message.order.as_ref().map(order),
        "contacts" if !message.contacts.is_empty() => Some(Content::Contacts {
            contacts: message
                .contacts
                .iter()
                .take(ContactCard::MAX_CARDS)
                .map(card)
                .collect(),
        }),
        "reaction" => message.reaction.as_ref().map(|r| Content::Reaction {
            target: r.message_id.clone(),
            emoji: r.emoji.clone().unwrap_or_default(),
        }),
        _ => None,
    }
    .unwrap_or_else(unsupported)
}

/// A cart as the platform sent it, bounded: at most [`OrderItem::MAX_ITEMS`] lines, ids and
/// texts clipped.
fn order(order: &wire::Order) -> Content {
    let clip = |s: &str, max: usize| concierge_domain::clip_text(s.trim(), max);
    Content::Order {
        catalog_id: clip(&order.catalog_id, 64),
        items: order
            .product_items
            .iter()
            .take(OrderItem::MAX_ITEMS)
            .map(|item| OrderItem {
                product: clip(&item.product_retailer_id, 100),
                quantity: item.quantity,
                unit_price: item.item_price.as_ref().map(|p| clip(&p.to_string(), 32)),
                currency: item.currency.as_deref().map(|c| clip(c, 8)),
            })
            .collect(),
        text: order
            .text
            .as_deref()
            .map(|t| clip(t, 1000))
            .filter(|t| !t.is_empty()),
    }
}

/// A completed Flow: its answers (a JSON object in a string), the flow token apart. Answers
/// that are not an object are not a form we can read.
fn form_reply(form: &wire::NfmReply) -> Option<Content> {
    let serde_json::Value::Object(mut answers) =
        serde_json::from_str::<serde_json::Value>(&form.response_json).ok()?
    else {
        return None;
    };
    let flow_token = match answers.remove("flow_token") {
        Some(serde_json::Value::String(token)) => Some(concierge_domain::clip_text(&token, 200)),
        _ => None,
    };
    Some(Content::FormReply {
        flow_token,
        answers: concierge_domain::bounded_answers(answers),
    })
}

fn card(shared: &wire::SharedContact) -> ContactCard {
    let name = shared.name.as_ref().map(|n| {
        n.formatted_name.clone().unwrap_or_else(|| {
            [n.first_name.as_deref(), n.last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        })
    });
    ContactCard::new(
        name.as_deref().unwrap_or_default(),
        shared.phones.iter().filter_map(|p| p.phone.clone()),
        shared.emails.iter().filter_map(|e| e.email.clone()),
    )
}

fn message_event(
    channel: &ChannelId,
    message: &wire::Message,
    names: &HashMap<String, String>,
) -> Option<InboundEvent> {
    let (contact, aliases) = contact_ids(message.from_user_id.as_deref(), message.from.as_deref())?;
    if message.kind == "system" {
        // A changed number or identity is an event about the contact, not words to answer.
        return system_event(channel, message, contact, aliases);
    }
    if let Some(edited) = &message.edit {
        return edit_event(channel, message, edited, contact, aliases);
    }
    if let Some(revoked) = &message.revoke {
        // The stored message takes the deleted marker in place of its words: an edit to
        // nothing, applied by the store as any edit is, never answered.
        let target = PlatformMessageId::parse(revoked.original_message_id.clone()).ok()?;
        let kind = EventKind::Edit {
            target,
            content: Content::Deleted,
        };
        return event(channel, message, contact, aliases, kind);
    }
    let key = contact.as_str().to_string();
    let platform_id = PlatformMessageId::parse(message.id.clone()).ok()?;
    let display_name = names.get(&key).cloned().or_else(|| {
        message
            .from
            .as_deref()
            .and_then(|phone| names.get(phone).cloned())
    });
    let kind = EventKind::Message(InboundMessage {
        platform_id,
        content: content(message),
        reply_to: message
            .context
            .as_ref()
            .and_then(|c| c.id.clone())
            .and_then(|id| PlatformMessageId::parse(id).ok()),
        display_name,
        over_budget: None,
    });
    event(channel, message, contact, aliases, kind)
}

/// A system message: a changed number links the new id to the contact; an identity change
/// is noted. Any other kind (none is documented) is logged; the webhook is kept raw.
fn system_event(
    channel: &ChannelId,
    message: &wire::Message,
    contact: ContactId,
    mut aliases: Vec<ContactId>,
) -> Option<InboundEvent> {
    let system = message.system.as_ref();
    let kind = match system.map(|s| s.kind.as_str()) {
        Some("user_changed_number") => {
            let address = system
                .and_then(|s| s.wa_id.as_deref())
                .and_then(|id| ContactId::parse(id).ok())?;
            let previous = message
                .from
                .as_deref()
                .and_then(|id| ContactId::parse(id).ok())?;
            if address == previous {
                return None;
            }
            for id in [&previous, &address] {
                if *id != contact && !aliases.contains(id) {
                    aliases.push(id.clone());
                }
            }
            EventKind::ContactChanged { previous, address }
        }
        Some("customer_identity_changed") => EventKind::IdentityChanged,
        other => {
            tracing::info!(%channel, message = %message.id, kind = other.unwrap_or(""), "a WhatsApp system message of a kind we do not read; kept raw, not answered");
            return None;
        }
    };
    event(channel, message, contact, aliases, kind)
}

/// A fault of the number (`value.errors`), as the channel's health record keeps it. Its id
/// is the fault itself, so a redelivered webhook counts it once.
fn fault_event(
    channel: &ChannelId,
    phone_number_id: &str,
    error: &wire::ApiError,
) -> Option<InboundEvent> {
    let fault = ChannelFault::new(
        error.code.map(|c| c.to_string()),
        error
            .title
            .as_deref()
            .or(error.message.as_deref())
            .unwrap_or("error"),
        error.error_data.as_ref().and_then(|d| d.details.as_deref()),
    );
    tracing::warn!(%channel, code = fault.code.as_deref().unwrap_or(""), title = %fault.title, "WhatsApp reports a fault of the number");
    let at = now_millis();
    Some(InboundEvent {
        channel: channel.clone(),
        // Meta dates none of these: a fault is kept once a minute at most.
        event_id: EventId::parse(format!(
            "fault:{}:{}",
            fault.code.as_deref().unwrap_or("-"),
            at / 60_000
        ))
        .ok()?,
        contact: ContactId::parse(phone_number_id).ok()?,
        aliases: Vec::new(),
        at,
        kind: EventKind::ChannelError(fault),
    })
}

/// A template's review or quality change, kept with the channel's health (its faults), where
/// the console and `GET /api/v1/channels` show it: a template rejected, paused or turning red
/// is something the merchant must know before the next notification.
fn template_event(
    channel: &ChannelId,
    phone_number_id: &str,
    field: &str,
    value: &wire::Value,
) -> Option<InboundEvent> {
    let name = value.message_template_name.as_deref().unwrap_or("?");
    let language = value.message_template_language.as_deref().unwrap_or("?");
    let (code, what) = if field == "message_template_status_update" {
        ("template_status", value.event.clone().unwrap_or_default())
    } else {
        (
            "template_quality",
            format!(
                "quality {} (was {})",
                value.new_quality_score.as_deref().unwrap_or("?"),
                value.previous_quality_score.as_deref().unwrap_or("?")
            ),
        )
    };
    let reason = value
        .reason
        .as_deref()
        .filter(|r| !r.is_empty() && *r != "NONE");
    let fault = ChannelFault::new(
        Some(code.to_string()),
        &format!("Template {name}.{language}: {what}"),
        reason,
    );
    tracing::info!(%channel, template = %format!("{name}.{language}"), %what, "WhatsApp reports on a template");
    let at = now_millis();
    Some(InboundEvent {
        channel: channel.clone(),
        event_id: EventId::parse(format!(
            "{code}:{}:{}:{}",
            clip(&format!("{name}.{language}"), 120),
            clip(&what, 60),
            at / 60_000
        ))
        .ok()?,
        contact: ContactId::parse(phone_number_id).ok()?,
        aliases: Vec::new(),
        at,
        kind: EventKind::ChannelError(fault),
    })
}

fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The event a message of the customer's brings, keyed on the message's id and dated by it.
fn event(
    channel: &ChannelId,
    message: &wire::Message,
    contact: ContactId,
    aliases: Vec<ContactId>,
    kind: EventKind,
) -> Option<InboundEvent> {
    Some(InboundEvent {
        channel: channel.clone(),
        event_id: EventId::parse(message.id.clone()).ok()?,
        contact,
        aliases,
        at: timestamp_millis(message.timestamp.as_deref()),
        kind,
    })
}

/// An edit: the original message's new content, read as a message of its own would be (the
/// edited message carries no id, so it takes the original's for reading).
fn edit_event(
    channel: &ChannelId,
    message: &wire::Message,
    edited: &wire::Edit,
    contact: ContactId,
    aliases: Vec<ContactId>,
) -> Option<InboundEvent> {
    let target = PlatformMessageId::parse(edited.original_message_id.clone()).ok()?;
    let mut inner = edited.message.clone();
    inner.insert(
        "id".to_string(),
        serde_json::Value::String(edited.original_message_id.clone()),
    );
    let content = match serde_json::from_value::<wire::Message>(serde_json::Value::Object(inner)) {
        Ok(now) => content(&now),
        Err(_) => Content::Unsupported {
            kind: "edit".to_string(),
        },
    };
    event(
        channel,
        message,
        contact,
        aliases,
        EventKind::Edit { target, content },
    )
}

/// A status, and for a failure that means the reply window closed, the signal to reconcile.
fn status_events(channel: &ChannelId, status: &wire::Status) -> Vec<InboundEvent> {
    let Some((contact, aliases)) = contact_ids(
        status.recipient_user_id.as_deref(),
        status.recipient_id.as_deref(),
    ) else {
        return Vec::new();
    };
    let Ok(target) = PlatformMessageId::parse(status.id.clone()) else {
        return Vec::new();
    };
    let delivery = match status.status.as_str() {
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        // A voice note listened to: as far as a message gets, for us it is read.
        "read" | "played" => DeliveryStatus::Read,
        "failed" => {
            let error = status.errors.first();
            DeliveryStatus::Failed {
                code: error.and_then(|e| e.code).map(|c| c.to_string()),
                reason: error
                    .and_then(|e| e.title.clone().or_else(|| e.message.clone()))
                    .unwrap_or_else(|| "failed".to_string()),
            }
        }
        _ => return Vec::new(),
    };
    let window_closed = status
        .errors
        .iter()
        .any(|e| e.code.is_some_and(|c| WINDOW_CLOSED_CODES.contains(&c)));
    // A status that the reply got through names it, so a send whose answer was lost is
    // known to have been accepted; a failure vouches for nothing.
    let ours = match delivery {
        DeliveryStatus::Failed { .. } => None,
        _ => status
            .biz_opaque_callback_data
            .as_deref()
            .and_then(callback::decode),
    };
    let mut events = status_report(
        channel,
        contact,
        aliases,
        target,
        &status.status,
        delivery,
        timestamp_millis(status.timestamp.as_deref()),
        window_closed,
    );
    for event in &mut events {
        if let EventKind::Status { ours: slot, .. } = &mut event.kind {
            *slot = ours;
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn channel() -> ChannelId {
        ChannelId::parse("whatsapp").unwrap()
    }

    fn notification(messages: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{ "changes": [{ "field": "messages", "value": {
                "metadata": { "phone_number_id": "1" },
                "messages": messages
            }}]}]
        }))
        .unwrap()
    }

    #[test]
    fn unknown_types_become_unsupported_and_bad_items_cost_only_themselves() {
        let body = notification(json!([
            { "from": "1555", "id": "wamid.a", "timestamp": "1", "type": "hologram", "hologram": {} },
            { "from": "1555", "timestamp": "1", "type": "text", "text": { "body": "no id" } },
            { "from": "1555", "id": "wamid.b", "timestamp": "x", "type": "image", "image": { "caption": "no id" } },
            { "from": "1555", "id": "wamid.c", "timestamp": "1", "type": "text", "text": { "body": "fine" } },
        ]));
        let events = parse(&channel(), "1", &body).unwrap();
        let contents: Vec<Content> = events
            .iter()
            .map(|e| match &e.kind {
                EventKind::Message(m) => m.content.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            contents,
            vec![
                Content::Unsupported {
                    kind: "hologram".into()
                },
                Content::Unsupported {
                    kind: "image".into()
                },
                Content::text("fine"),
            ]
        );
    }

    #[test]
    fn changes_for_another_number_are_left_alone() {
        let body = notification(json!([
            { "from": "1555", "id": "wamid.a", "timestamp": "1", "type": "text", "text": { "body": "hi" } }
        ]));
        assert_eq!(parse(&channel(), "1", &body).unwrap().len(), 1);
        assert!(parse(&channel(), "2", &body).unwrap().is_empty());
    }

    /// As Meta's documentation gives them.
    #[test]
    fn template_reviews_and_quality_changes_become_channel_faults() {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "0", "time": 1, "changes": [
                { "field": "message_template_status_update", "value": {
                    "event": "REJECTED", "message_template_id": 12345678,
                    "message_template_name": "order_shipped", "message_template_language": "fr",
                    "reason": "INCORRECT_CATEGORY" } },
                { "field": "message_template_quality_update", "value": {
                    "previous_quality_score": "GREEN", "new_quality_score": "YELLOW",
                    "message_template_id": 12345678, "message_template_name": "back_in_stock",
                    "message_template_language": "fr" } },
            ]}]
        })
        .to_string();
        let events = parse(&channel(), "1", body.as_bytes()).unwrap();
        let faults: Vec<_> = events
            .iter()
            .map(|e| match &e.kind {
                EventKind::ChannelError(f) => {
                    (f.code.clone().unwrap(), f.title.clone(), f.detail.clone())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            faults,
            [
                (
                    "template_status".to_string(),
                    "Template order_shipped.fr: REJECTED".to_string(),
                    Some("INCORRECT_CATEGORY".to_string())
                ),
                (
                    "template_quality".to_string(),
                    "Template back_in_stock.fr: quality YELLOW (was GREEN)".to_string(),
                    None
                ),
            ]
        );
    }

    #[test]
    fn other_objects_are_parse_errors_not_panics() {
        assert!(parse(&channel(), "1", br#"{"object":"page","entry":[]}"#).is_err());
        assert!(parse(&channel(), "1", b"[]").is_err());
    }

    fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null)),
            "[a-z_.0-9]{0,12}".prop_map(serde_json::Value::from),
            prop_oneof![
                Just("whatsapp_business_account"),
                Just("messages"),
                Just("text"),
                Just("image"),
                Just("interactive"),
                Just("button_reply"),
                Just("failed"),
                Just("reaction"),
            ]
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("object".to_string()),
                        Just("entry".to_string()),
                        Just("changes".to_string()),
                        Just("field".to_string()),
                        Just("value".to_string()),
                        Just("messages".to_string()),
                        Just("statuses".to_string()),
                        Just("from".to_string()),
                        Just("id".to_string()),
                        Just("type".to_string()),
                        Just("text".to_string()),
                        Just("body".to_string()),
                        Just("errors".to_string()),
                        Just("code".to_string()),
                        "[a-z_]{1,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&channel(), "1", &bytes);
        }

        #[test]
        fn random_json_never_panics(value in arbitrary_json()) {
            let body = serde_json::to_vec(&value).unwrap();
            let _ = parse(&channel(), "1", &body);
        }

        #[test]
        fn random_messages_in_a_valid_envelope_never_panic(messages in prop::collection::vec(arbitrary_json(), 0..4)) {
            let _ = parse(&channel(), "1", &notification(serde_json::Value::Array(messages)));
        }
    }
}
