//! From a verified Twilio form post to normalised events: inbound messages (text, media,
//! location, button and list replies, replies in context) and status callbacks.

use super::super::{ParseError, status_report};
use concierge_domain::{
    ChannelId, Choice, ContactId, Content, DeliveryStatus, EventId, EventKind, InboundEvent,
    InboundMessage, MediaKind, MediaRef, PlatformMessageId, now_millis,
};

/// Twilio's code for a free-form message outside the 24-hour window.
pub const WINDOW_CLOSED_CODES: &[&str] = &["63016"];

/// The form fields, in the order received (names may repeat).
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Result<Form, ParseError> {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map(Form)
            .map_err(|_| ParseError("not a form-encoded body".to_string()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// The contact key: the WhatsApp id (digits), from WaId or the address without its prefix.
pub fn contact_key(wa_id: Option<&str>, address: Option<&str>) -> Option<String> {
    wa_id
        .map(str::to_string)
        .or_else(|| {
            address.map(|a| {
                a.trim_start_matches("whatsapp:")
                    .trim_start_matches('+')
                    .to_string()
            })
        })
        .filter(|k| !k.is_empty())
}

fn media_kind(mime: Option<&str>) -> MediaKind {
    match mime.and_then(|m| m.split('/').next()) {
        Some("image") => MediaKind::Image,
        Some("audio") => MediaKind::Audio,
        Some("video") => MediaKind::Video,
        _ => MediaKind::Document,
    }
}

/// The account and sender this channel stands for; posts for others are left alone.
pub struct Ours<'a> {
    pub account_sid: &'a str,
    pub sender: &'a str,
}

pub fn parse(
    channel: &ChannelId,
    ours: &Ours<'_>,
    form: &Form,
) -> Result<Vec<InboundEvent>, ParseError> {
    if form
        .get("AccountSid")
        .is_some_and(|a| a != ours.account_sid)
    {
        tracing::warn!(%channel, "a Twilio post for another account; ignored");
        return Ok(Vec::new());
    }
    // Our sender is To for a customer's message, From for a status of ours.
    let our_side = if form.get("MessageStatus").is_some() {
        form.get("From")
    } else {
        form.get("To")
    };
    if our_side.is_some_and(|s| s != ours.sender) {
        tracing::warn!(%channel, "a Twilio post for another sender; ignored");
        return Ok(Vec::new());
    }
    let sid = form
        .get("MessageSid")
        .or_else(|| form.get("SmsSid"))
        .ok_or_else(|| ParseError("no MessageSid".to_string()))?;
    if let Some(status) = form.get("MessageStatus") {
        return Ok(status_events(channel, form, sid, status));
    }
    let key = contact_key(form.get("WaId"), form.get("From"))
        .ok_or_else(|| ParseError("no sender".to_string()))?;
    let contact = ContactId::parse(key).map_err(|e| ParseError(e.to_string()))?;
    let body = form.get("Body");
    let num_media: usize = form
        .get("NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        .min(10);
    let mut contents = Vec::new();
    for n in 0..num_media {
        let Some(url) = form.get(&format!("MediaUrl{n}")) else {
            continue;
        };
        let mime = form.get(&format!("MediaContentType{n}"));
        contents.push(Content::Media {
            kind: media_kind(mime),
            mime: mime.map(str::to_string),
            caption: if n == 0 {
                body.map(str::to_string)
            } else {
                None
            },
            media: MediaRef(url.to_string()),
            kept: None,
        });
    }
    if contents.is_empty() {
        let content = if let (Some(lat), Some(lng)) = (form.get("Latitude"), form.get("Longitude"))
        {
            match (lat.parse::<f64>(), lng.parse::<f64>()) {
                (Ok(latitude), Ok(longitude)) => Content::Location {
                    latitude,
                    longitude,
                    name: form.get("Label").map(str::to_string),
                    address: form.get("Address").map(str::to_string),
                },
                _ => Content::Unsupported {
                    kind: "location".to_string(),
                },
            }
        } else if let Some(payload) = form.get("ButtonPayload") {
            Content::Choice(Choice::new(
                payload,
                form.get("ButtonText").or(body).unwrap_or(payload),
            ))
        } else if let Some(id) = form.get("ListId") {
            Content::Choice(Choice::new(
                id,
                form.get("ListTitle").or(body).unwrap_or(id),
            ))
        } else if let Some(body) = body {
            Content::text(body)
        } else {
            Content::Unsupported {
                kind: form
                    .get("MessageType")
                    .unwrap_or("unknown")
                    .chars()
                    .take(40)
                    .collect(),
            }
        };
        contents.push(content);
    }
    let reply_to = form
        .get("OriginalRepliedMessageSid")
        .and_then(|s| PlatformMessageId::parse(s).ok());
    let at = now_millis();
    let mut events = Vec::with_capacity(contents.len());
    for (n, content) in contents.into_iter().enumerate() {
        // A message with several media becomes one message per media file.
        let id = if n == 0 {
            sid.to_string()
        } else {
            format!("{sid}:{n}")
        };
        events.push(InboundEvent {
            channel: channel.clone(),
            event_id: EventId::parse(id.clone()).map_err(|e| ParseError(e.to_string()))?,
            contact: contact.clone(),
            aliases: Vec::new(),
            at,
            kind: EventKind::Message(InboundMessage {
                platform_id: PlatformMessageId::parse(id).map_err(|e| ParseError(e.to_string()))?,
                content,
                reply_to: reply_to.clone(),
                display_name: form
                    .get("ProfileName")
                    .and_then(concierge_domain::display_name),
                over_budget: None,
            }),
        });
    }
    Ok(events)
}

fn status_events(channel: &ChannelId, form: &Form, sid: &str, status: &str) -> Vec<InboundEvent> {
    let delivery = match status {
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "read" => DeliveryStatus::Read,
        "failed" | "undelivered" => DeliveryStatus::Failed {
            code: form.get("ErrorCode").map(str::to_string),
            // The channel's own words first, then Twilio's (`ErrorMessage` is what most
            // undelivered callbacks carry), then just the status.
            reason: ["ChannelStatusMessage", "ErrorMessage"]
                .iter()
                .filter_map(|key| form.get(key).filter(|v| !v.trim().is_empty()))
                .map(|v| concierge_domain::clip_text(v, 300))
                .next()
                .unwrap_or_else(|| status.to_string()),
        },
        // queued, accepted, sending, scheduled…: nothing the customer sees yet.
        _ => return Vec::new(),
    };
    let Some(key) = contact_key(None, form.get("To")) else {
        return Vec::new();
    };
    let (Ok(contact), Ok(target)) = (ContactId::parse(key), PlatformMessageId::parse(sid)) else {
        return Vec::new();
    };
    let window_closed = form
        .get("ErrorCode")
        .is_some_and(|c| WINDOW_CLOSED_CODES.contains(&c));
    status_report(
        channel,
        contact,
        Vec::new(),
        target,
        status,
        delivery,
        now_millis(),
        window_closed,
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const OURS: Ours<'static> = Ours {
        account_sid: "AC1",
        sender: "whatsapp:+15550100000",
    };

    fn channel() -> ChannelId {
        ChannelId::parse("twilio").unwrap()
    }

    #[test]
    fn posts_for_another_account_or_sender_are_left_alone() {
        let mine = "MessageSid=SM1&AccountSid=AC1&From=whatsapp%3A%2B15550100001&To=whatsapp%3A%2B15550100000&Body=hi";
        let form = Form::parse(mine.as_bytes()).unwrap();
        assert_eq!(parse(&channel(), &OURS, &form).unwrap().len(), 1);
        let other_account = mine.replace("AC1", "AC2");
        let form = Form::parse(other_account.as_bytes()).unwrap();
        assert!(parse(&channel(), &OURS, &form).unwrap().is_empty());
        let other_sender = mine.replace("To=whatsapp%3A%2B15550100000", "To=%2B15550100000");
        let form = Form::parse(other_sender.as_bytes()).unwrap();
        assert!(parse(&channel(), &OURS, &form).unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(form) = Form::parse(&bytes) {
                let _ = parse(&channel(), &OURS, &form);
            }
        }

        #[test]
        fn random_fields_never_panic(fields in prop::collection::vec((
            prop_oneof![
                Just("MessageSid".to_string()), Just("From".to_string()), Just("WaId".to_string()),
                Just("Body".to_string()), Just("NumMedia".to_string()), Just("MediaUrl0".to_string()),
                Just("MediaContentType0".to_string()), Just("Latitude".to_string()),
                Just("Longitude".to_string()), Just("ButtonPayload".to_string()),
                Just("MessageStatus".to_string()), Just("ErrorCode".to_string()), Just("To".to_string()),
                "[A-Za-z0-9]{1,10}",
            ],
            ".{0,30}",
        ), 0..12)) {
            let _ = parse(&channel(), &OURS, &Form(fields));
        }
    }
}
