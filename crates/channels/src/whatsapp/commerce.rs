//! Products and payment buttons in the Cloud API's shapes: with the business's catalogue
//! connected (`catalog_id`), a single-product message for one product and a multi-product
//! message (one section, at most 30 items) for several; without it, each product as a
//! reply-button message with its picture as the header and an "Add to cart" button. A payment
//! link is an interactive `cta_url` message (a button of at most 20 characters).

use serde_json::{Value, json};

use crate::choice_id::fitted;
use concierge_domain::{Product, clip_text};

const MAX_BODY: usize = 1024;
const MAX_HEADER: usize = 60;
const MAX_SECTION_TITLE: usize = 24;
const MAX_BUTTON_ID: usize = 256;
const MAX_CTA_LABEL: usize = 20;
/// The most products sent as button messages when no catalogue is connected: past it, the
/// rest are listed in the text.
const MAX_FALLBACK: usize = 10;

/// The label of the fallback's cart button.
pub const ADD_TO_CART_LABEL: &str = "Add to cart";

/// The parts of a products message.
pub fn products(body: &str, products: &[Product], catalog: Option<&str>) -> Vec<Value> {
    let products = &products[..products.len().min(Product::MAX_PER_MESSAGE)];
    match (catalog, products) {
        (_, []) => vec![super::render::text(body)],
        (Some(catalog), [one]) => vec![json!({
            "type": "interactive",
            "interactive": {
                "type": "product",
                "body": { "text": clip_text(body, MAX_BODY) },
                "action": { "catalog_id": catalog, "product_retailer_id": one.id },
            }
        })],
        (Some(catalog), many) => {
            let header = body.lines().next().unwrap_or(body);
            let items: Vec<Value> = many
                .iter()
                .map(|p| json!({ "product_retailer_id": p.id }))
                .collect();
            vec![json!({
                "type": "interactive",
                "interactive": {
                    "type": "product_list",
                    "header": { "type": "text", "text": clip_text(header, MAX_HEADER) },
                    "body": { "text": clip_text(body, MAX_BODY) },
                    "action": {
                        "catalog_id": catalog,
                        "sections": [{
                            "title": clip_text(header, MAX_SECTION_TITLE),
                            "product_items": items,
                        }],
                    },
                }
            })]
        }
        (None, products) => fallback(body, products),
    }
}

/// Without a catalogue: the text, then each product with its picture and a cart button
/// (a sold-out one without the button), the ones past [`MAX_FALLBACK`] as lines of text.
fn fallback(body: &str, products: &[Product]) -> Vec<Value> {
    let (shown, rest) = products.split_at(products.len().min(MAX_FALLBACK));
    let mut text = body.to_string();
    for p in rest {
        text.push_str(&format!("\n• {}", p.line()));
    }
    let mut parts = vec![super::render::text(&text)];
    for p in shown {
        if p.available == Some(false) {
            parts.push(match &p.image {
                Some(image) => json!({ "type": "image", "image": { "link": image, "caption": clip_text(&p.line(), MAX_BODY) } }),
                None => super::render::text(&p.line()),
            });
            continue;
        }
        let mut interactive = json!({
            "type": "button",
            "body": { "text": clip_text(&p.line(), MAX_BODY) },
            "action": { "buttons": [{ "type": "reply", "reply": {
                "id": fitted(&p.add_choice_id(), MAX_BUTTON_ID), "title": ADD_TO_CART_LABEL,
            } }] },
        });
        if let Some(image) = &p.image {
            interactive["header"] = json!({ "type": "image", "image": { "link": image } });
        }
        parts.push(json!({ "type": "interactive", "interactive": interactive }));
    }
    parts
}

/// A form (a Flow) with its token: opened on its first screen when the flow has one named,
/// else through the merchant's endpoint (`data_exchange`).
pub fn flow(
    body: &str,
    flow_id: &str,
    token: &str,
    cta: &str,
    screen: Option<&str>,
    data: Option<&Value>,
) -> Value {
    let mut parameters = json!({
        "flow_message_version": "3",
        "flow_token": token,
        "flow_id": flow_id,
        "flow_cta": clip_text(cta, MAX_CTA_LABEL),
        "flow_action": if screen.is_some() { "navigate" } else { "data_exchange" },
    });
    if let Some(screen) = screen {
        let mut payload = json!({ "screen": screen });
        if let Some(data) = data.filter(|d| d.as_object().is_some_and(|o| !o.is_empty())) {
            payload["data"] = data.clone();
        }
        parameters["flow_action_payload"] = payload;
    }
    json!({
        "type": "interactive",
        "interactive": {
            "type": "flow",
            "body": { "text": clip_text(body, MAX_BODY) },
            "action": { "name": "flow", "parameters": parameters },
        }
    })
}

/// A payment link as a call-to-action button.
pub fn payment(body: &str, url: &str, label: &str) -> Value {
    json!({
        "type": "interactive",
        "interactive": {
            "type": "cta_url",
            "body": { "text": clip_text(body, MAX_BODY) },
            "action": { "name": "cta_url", "parameters": {
                "display_text": clip_text(label, MAX_CTA_LABEL), "url": url,
            } },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, available: bool) -> Product {
        Product {
            id: id.into(),
            name: format!("Candle {id}"),
            price: Some("€38.00".into()),
            image: Some(format!("https://cdn.example/{id}.jpg")),
            available: Some(available),
        }
    }

    #[test]
    fn with_a_catalogue_one_product_is_a_product_message_and_more_a_list() {
        let one = products("Our fig candle", &[product("A", true)], Some("CAT1"));
        assert_eq!(one[0]["interactive"]["type"], "product");
        assert_eq!(one[0]["interactive"]["action"]["product_retailer_id"], "A");
        let many: Vec<Product> = (0..40).map(|i| product(&i.to_string(), true)).collect();
        let list = products("Two ideas for your sister", &many, Some("CAT1"));
        let action = &list[0]["interactive"]["action"];
        assert_eq!(list[0]["interactive"]["type"], "product_list");
        assert_eq!(action["catalog_id"], "CAT1");
        assert_eq!(
            action["sections"][0]["product_items"]
                .as_array()
                .unwrap()
                .len(),
            30
        );
        assert!(
            list[0]["interactive"]["header"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count()
                <= MAX_HEADER
        );
    }

    #[test]
    fn without_a_catalogue_each_product_has_its_picture_and_a_cart_button() {
        let parts = products(
            "Two ideas",
            &[product("A", true), product("B", false)],
            None,
        );
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0]["text"]["body"], "Two ideas");
        let a = &parts[1]["interactive"];
        assert_eq!(a["header"]["image"]["link"], "https://cdn.example/A.jpg");
        assert_eq!(a["action"]["buttons"][0]["reply"]["id"], "cart:add:A");
        assert_eq!(a["body"]["text"], "Candle A, €38.00");
        // Sold out: shown, without a button.
        assert_eq!(parts[2]["type"], "image");
        assert_eq!(parts[2]["image"]["caption"], "Candle B, €38.00 (sold out)");
    }

    #[test]
    fn a_flow_carries_its_token_and_opens_on_its_screen() {
        let data = serde_json::json!({ "order": "ML-1" });
        let part = flow(
            "Where to?",
            "123",
            "flow-abc",
            "Give my address",
            Some("ADDRESS"),
            Some(&data),
        );
        let p = &part["interactive"]["action"]["parameters"];
        assert_eq!(part["interactive"]["type"], "flow");
        assert_eq!(p["flow_token"], "flow-abc");
        assert_eq!(p["flow_action"], "navigate");
        assert_eq!(p["flow_action_payload"]["screen"], "ADDRESS");
        assert_eq!(p["flow_action_payload"]["data"]["order"], "ML-1");
        let p = &flow("x", "1", "t", "Go", None, None)["interactive"]["action"]["parameters"];
        assert_eq!(p["flow_action"], "data_exchange");
        assert!(p.get("flow_action_payload").is_none());
    }

    #[test]
    fn a_payment_is_a_cta_url_button() {
        let part = payment(
            "Your order ML-1: €38.00",
            "https://pay.example/1",
            "Pay now",
        );
        assert_eq!(part["interactive"]["type"], "cta_url");
        assert_eq!(
            part["interactive"]["action"]["parameters"]["url"],
            "https://pay.example/1"
        );
        assert_eq!(
            part["interactive"]["action"]["parameters"]["display_text"],
            "Pay now"
        );
    }
}
