//! Our content in the Cloud API's outbound shapes, within the platform's limits: at most 3
//! reply buttons of 20 characters, lists of at most 10 rows of 24, 4096 characters of text.
//! Nothing above the adapter knows these limits.

use serde_json::{Value, json};

use crate::choice_id::fitted;
use concierge_domain::{Choice, Content, MediaKind, clip_text, split_text};

pub const MAX_BUTTONS: usize = 3;
pub const MAX_BUTTON_TITLE: usize = 20;
pub const MAX_LIST_ROWS: usize = 10;
const MAX_ROW_TITLE: usize = 24;
const MAX_ROW_DESCRIPTION: usize = 72;
/// Meta's limits on a list row's id and a reply button's id.
const MAX_ROW_ID: usize = 200;
const MAX_BUTTON_ID: usize = 256;
const MAX_SECTION_TITLE: usize = 24;
const MAX_HEADER: usize = 60;
const MAX_FOOTER: usize = 60;
/// A reply-button message's body; a list's may hold a whole text message.
const MAX_BUTTONS_BODY: usize = 1024;
const MAX_LIST_BODY: usize = 4096;
pub const MAX_TEXT: usize = 4096;

/// The recipient fields: a phone number goes in `to`, a business-scoped user id in
/// `recipient`.
pub fn recipient(contact: &str) -> (&'static str, String) {
    if contact.chars().all(|c| c.is_ascii_digit()) {
        ("to", contact.to_string())
    } else {
        ("recipient", contact.to_string())
    }
}

/// The message bodies for one piece of content (several when a text is too long for one);
/// products come from `catalog` when the business connected one.
pub fn bodies(
    contact: &str,
    content: &Content,
    reply_to: Option<&str>,
    catalog: Option<&str>,
) -> Result<Vec<Value>, String> {
    let parts: Vec<Value> = match content {
        Content::Text { body } => split_text(body, MAX_TEXT)
            .into_iter()
            .map(|chunk| text(&chunk))
            .collect(),
        Content::Choices {
            body,
            choices,
            header,
            footer,
            button,
        } => choices_bodies(
            body,
            choices,
            header.as_deref(),
            footer.as_deref(),
            button.as_deref(),
        ),
        Content::Media {
            kind,
            caption,
            media,
            ..
        } => {
            let kind_name = kind.name();
            let mut object = serde_json::Map::new();
            if media.0.starts_with("https://") || media.0.starts_with("http://") {
                object.insert("link".into(), json!(media.0));
            } else {
                object.insert("id".into(), json!(media.0));
            }
            let captioned = matches!(
                kind,
                MediaKind::Image | MediaKind::Video | MediaKind::Document
            );
            if let (true, Some(caption)) = (captioned, caption) {
                object.insert("caption".into(), json!(clip_text(caption, 1024)));
            }
            vec![json!({ "type": kind_name, kind_name: Value::Object(object) })]
        }
        Content::Location {
            latitude,
            longitude,
            name,
            address,
        } => {
            let mut location = json!({ "latitude": latitude, "longitude": longitude });
            if let Some(name) = name {
                location["name"] = json!(name);
            }
            if let Some(address) = address {
                location["address"] = json!(address);
            }
            vec![json!({ "type": "location", "location": location })]
        }
        Content::Template {
            name,
            language,
            params,
            names,
            ..
        } => vec![template(name, language, params, names)],
        Content::Reaction { target, emoji } => vec![json!({
            "type": "reaction",
            "reaction": { "message_id": target, "emoji": emoji }
        })],
        Content::Choice(choice) => vec![text(&choice.title)],
        Content::Products { body, products } => super::commerce::products(body, products, catalog),
        Content::PaymentLink { body, url, label } => {
            vec![super::commerce::payment(body, url, label)]
        }
        Content::Flow {
            body,
            flow_id,
            token,
            cta,
            screen,
            data,
            ..
        } => vec![super::commerce::flow(
            body,
            flow_id,
            token,
            cta,
            screen.as_deref(),
            data.as_ref(),
        )],
        other => {
            return Err(format!(
                "cannot send {} content on WhatsApp",
                other.kind_name()
            ));
        }
    };
    let (field, value) = recipient(contact);
    Ok(parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let mut body = json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
            });
            body[field] = json!(value);
            if let (0, Some(reply_to)) = (i, reply_to) {
                body["context"] = json!({ "message_id": reply_to });
            }
            if let (Value::Object(target), Value::Object(part)) = (&mut body, part) {
                target.extend(part);
            }
            body
        })
        .collect())
}

/// A template message; with `names` (one per parameter), its parameters are named (a
/// template of `{{order}}` placeholders), else numbered in order.
pub fn template(name: &str, language: &str, params: &[String], names: &[String]) -> Value {
    let mut template = json!({ "name": name, "language": { "code": language } });
    if !params.is_empty() {
        let parameters: Vec<Value> = params
            .iter()
            .enumerate()
            .map(|(i, p)| match names.get(i) {
                Some(name) => json!({ "type": "text", "parameter_name": name, "text": p }),
                None => json!({ "type": "text", "text": p }),
            })
            .collect();
        template["components"] = json!([{ "type": "body", "parameters": parameters }]);
    }
    json!({ "type": "template", "template": template })
}

fn has_link(text: &str) -> bool {
    text.contains("https://") || text.contains("http://") || text.contains("www.")
}

pub(super) fn text(body: &str) -> Value {
    json!({ "type": "text", "text": { "preview_url": has_link(body), "body": body } })
}

/// Whether the choices can be reply buttons: at most three, short, without a second line, and
/// with titles Meta can tell apart (it refuses two buttons of the same title).
fn fits_buttons(choices: &[Choice]) -> bool {
    let mut titles: Vec<String> = choices.iter().map(|c| c.title.to_lowercase()).collect();
    titles.sort();
    titles.dedup();
    choices.len() <= MAX_BUTTONS
        && titles.len() == choices.len()
        && choices
            .iter()
            .all(|c| c.title.chars().count() <= MAX_BUTTON_TITLE && c.description.is_none())
}

/// A question with its choices, nothing of it cut: a body longer than the interactive
/// message takes goes first as text, and the choices come in a last message that fits.
fn choices_bodies(
    body: &str,
    choices: &[Choice],
    header: Option<&str>,
    footer: Option<&str>,
    button: Option<&str>,
) -> Vec<Value> {
    if choices.is_empty() {
        return split_text(body, MAX_TEXT).iter().map(|c| text(c)).collect();
    }
    if choices.len() > MAX_LIST_ROWS {
        // Too many for a list: numbered text the customer can answer with a number, in as
        // many messages as it takes.
        let mut lines = vec![body.to_string(), String::new()];
        for (i, choice) in choices.iter().enumerate() {
            lines.push(format!("{}. {}", i + 1, choice.title));
        }
        return split_text(&lines.join("\n"), MAX_TEXT)
            .iter()
            .map(|c| text(c))
            .collect();
    }
    let buttons = fits_buttons(choices);
    let limit = if buttons {
        MAX_BUTTONS_BODY
    } else {
        MAX_LIST_BODY
    };
    let mut parts = split_text(body, limit);
    let last = parts.pop().unwrap_or_default();
    let mut bodies: Vec<Value> = parts.iter().map(|c| text(c)).collect();
    bodies.push(choices_body(
        &last, choices, buttons, header, footer, button,
    ));
    bodies
}

/// The list rows' titles, each within Meta's 24 characters; when cutting makes two alike,
/// every title is numbered so that the rows stay apart.
fn row_titles(choices: &[Choice]) -> Vec<String> {
    let cut: Vec<String> = choices
        .iter()
        .map(|c| clip_text(&c.title, MAX_ROW_TITLE))
        .collect();
    let alike = cut.iter().enumerate().any(|(i, t)| cut[..i].contains(t));
    if !alike {
        return cut;
    }
    choices
        .iter()
        .enumerate()
        .map(|(i, c)| clip_text(&format!("{}. {}", i + 1, c.title), MAX_ROW_TITLE))
        .collect()
}

fn choices_body(
    body: &str,
    choices: &[Choice],
    buttons: bool,
    header: Option<&str>,
    footer: Option<&str>,
    button: Option<&str>,
) -> Value {
    let mut interactive = if buttons {
        let buttons: Vec<Value> = choices
            .iter()
            .map(|c| {
                json!({ "type": "reply", "reply": {
                    "id": fitted(&c.id, MAX_BUTTON_ID), "title": c.title,
                } })
            })
            .collect();
        json!({
            "type": "button",
            "body": { "text": clip_text(body, MAX_BUTTONS_BODY) },
            "action": { "buttons": buttons },
        })
    } else {
        // Rows grouped by section, in the order sections first appear.
        let mut sections: Vec<(String, Vec<Value>)> = Vec::new();
        let titles = row_titles(choices);
        for (choice, row_title) in choices.iter().zip(titles) {
            let title = clip_text(
                choice.section.as_deref().unwrap_or_default(),
                MAX_SECTION_TITLE,
            );
            // A title cut to fit is given whole on the row's second line.
            let cut = row_title != choice.title;
            let description = match (&choice.description, cut) {
                (Some(d), true) => Some(format!("{} · {d}", choice.title)),
                (Some(d), false) => Some(d.clone()),
                (None, true) => Some(choice.title.clone()),
                (None, false) => None,
            };
            let mut row = json!({ "id": fitted(&choice.id, MAX_ROW_ID), "title": row_title });
            if let Some(description) = description {
                row["description"] = json!(clip_text(&description, MAX_ROW_DESCRIPTION));
            }
            match sections.iter_mut().find(|(t, _)| *t == title) {
                Some((_, rows)) => rows.push(row),
                None => sections.push((title, vec![row])),
            }
        }
        // With several sections every one needs a title.
        let several = sections.len() > 1;
        let sections: Vec<Value> = sections
            .into_iter()
            .map(|(title, rows)| {
                let mut section = json!({ "rows": rows });
                if !title.is_empty() {
                    section["title"] = json!(title);
                } else if several {
                    section["title"] = json!("Options");
                }
                section
            })
            .collect();
        json!({
            "type": "list",
            "body": { "text": clip_text(body, MAX_LIST_BODY) },
            "action": {
                "button": clip_text(button.unwrap_or("Choose"), MAX_BUTTON_TITLE),
                "sections": sections,
            },
        })
    };
    if let Some(header) = header {
        interactive["header"] = json!({ "type": "text", "text": clip_text(header, MAX_HEADER) });
    }
    if let Some(footer) = footer {
        interactive["footer"] = json!({ "text": clip_text(footer, MAX_FOOTER) });
    }
    json!({ "type": "interactive", "interactive": interactive })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choices(n: usize, title: &str) -> Vec<Choice> {
        (0..n)
            .map(|i| Choice::new(format!("c{i}"), format!("{title}{i}")))
            .collect()
    }

    fn render(content: Content) -> Value {
        bodies("15550100001", &content, None, None)
            .unwrap()
            .remove(0)
    }

    fn choices_content(list: Vec<Choice>) -> Content {
        Content::Choices {
            body: "Pick".into(),
            choices: list,
            header: None,
            footer: None,
            button: None,
        }
    }

    fn asking(body: &str, list: Vec<Choice>) -> Vec<Value> {
        let content = Content::Choices {
            body: body.into(),
            choices: list,
            header: None,
            footer: None,
            button: None,
        };
        bodies("15550100001", &content, None, None).unwrap()
    }

    #[test]
    fn buttons_of_the_same_title_become_a_list() {
        let same = vec![
            Choice::new("a", "Yes"),
            Choice::new("b", "yes"),
            Choice::new("c", "No"),
        ];
        let parts = asking("Sure?", same);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0]["interactive"]["type"], "list");
        let rows = &parts[0]["interactive"]["action"]["sections"][0]["rows"];
        assert_eq!(rows.as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn a_long_question_goes_first_as_text_and_the_choices_last_nothing_cut() {
        let question = format!("{} end of the question?", "word ".repeat(400));
        let parts = asking(&question, choices(2, "Option "));
        assert!(parts.len() >= 2, "{parts:?}");
        let last = parts.last().unwrap();
        assert_eq!(last["interactive"]["type"], "button");
        let body = last["interactive"]["body"]["text"].as_str().unwrap();
        assert!(body.chars().count() <= MAX_BUTTONS_BODY);
        assert!(body.ends_with("end of the question?"), "{body}");
        let mut sent: Vec<&str> = parts[..parts.len() - 1]
            .iter()
            .map(|p| p["text"]["body"].as_str().unwrap())
            .collect();
        sent.push(body);
        assert_eq!(
            sent.join(" ").split_whitespace().count(),
            question.split_whitespace().count()
        );
        // A list takes a body of a whole text message.
        let long_list = format!("{}?", "x".repeat(3000));
        let parts = asking(&long_list, choices(5, "Option "));
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0]["interactive"]["body"]["text"], long_list.as_str());
    }

    #[test]
    fn many_numbered_choices_are_split_never_cut() {
        let parts = asking(&"q ".repeat(2000), choices(40, &"t".repeat(100)));
        assert!(parts.len() >= 2);
        let all: String = parts
            .iter()
            .map(|p| p["text"]["body"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("40. "), "the last option is there");
        assert!(
            parts
                .iter()
                .all(|p| p["text"]["body"].as_str().unwrap().chars().count() <= MAX_TEXT)
        );
    }

    #[test]
    fn three_short_choices_are_buttons() {
        let body = render(choices_content(choices(3, "Opt")));
        assert_eq!(body["interactive"]["type"], "button");
        assert_eq!(
            body["interactive"]["action"]["buttons"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn four_choices_or_long_titles_become_a_list() {
        let body = render(choices_content(choices(4, "Opt")));
        assert_eq!(body["interactive"]["type"], "list");
        let body = render(choices_content(choices(2, "A title longer than twenty")));
        assert_eq!(body["interactive"]["type"], "list");
        let row = &body["interactive"]["action"]["sections"][0]["rows"][0];
        assert!(row["title"].as_str().unwrap().chars().count() <= 24);
    }

    #[test]
    fn every_section_has_a_title_when_there_are_several() {
        let mut list = choices(4, "Opt");
        list[0].section = Some("Evening".into());
        let body = render(choices_content(list));
        let sections = body["interactive"]["action"]["sections"]
            .as_array()
            .unwrap();
        assert_eq!(sections.len(), 2);
        assert!(sections.iter().all(|s| s["title"].is_string()));
    }

    #[test]
    fn more_than_ten_choices_become_numbered_text() {
        let body = render(choices_content(choices(11, "Opt")));
        assert_eq!(body["type"], "text");
        let text = body["text"]["body"].as_str().unwrap();
        assert!(text.contains("1. Opt0") && text.contains("11. Opt10"));
    }

    #[test]
    fn long_text_is_split_and_links_preview() {
        let long = "word ".repeat(2000);
        let parts = bodies("1", &Content::text(long), Some("wamid.x"), None).unwrap();
        assert_eq!(parts.len(), 3);
        assert!(
            parts
                .iter()
                .all(|p| p["text"]["body"].as_str().unwrap().chars().count() <= MAX_TEXT)
        );
        assert_eq!(parts[0]["context"]["message_id"], "wamid.x");
        assert!(parts[1].get("context").is_none());
        let link = render(Content::text("see https://example.test"));
        assert_eq!(link["text"]["preview_url"], true);
    }

    #[test]
    fn business_scoped_ids_go_in_recipient() {
        assert_eq!(recipient("15550100001").0, "to");
        assert_eq!(recipient("US.13491208655302741918").0, "recipient");
    }
}
