//! What the merchant tools' answers say about buying, read by the gateway itself: the
//! products a turn's answers described (the only ones `show_products` may show, with their
//! names, prices and pictures as the tools gave them), and a payment link (`payment_url`) the
//! gateway sends as a button after the agent's reply. The model's words are never read here.

use std::collections::HashMap;

use serde_json::Value;

use concierge_domain::{Product, clip_text};

/// The keys a product's id may be under, in order of preference.
const ID_KEYS: [&str; 4] = ["id", "sku", "retailer_id", "product_id"];
/// The keys of its picture.
const IMAGE_KEYS: [&str; 3] = ["image_url", "image", "picture"];
/// How deep into an answer products are looked for.
const MAX_DEPTH: usize = 6;
/// The most products taken from one answer.
const MAX_PRODUCTS: usize = 500;
/// The longest label of a payment button (WhatsApp's `display_text` holds 20).
const MAX_LABEL: usize = 20;
/// The longest line shown with it.
const MAX_TEXT: usize = 1024;

/// A payment button a merchant tool asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentButton {
    pub url: String,
    pub label: String,
    pub text: String,
}

/// Every product the answers describe, by id: an object with an id (`id`, `sku`,
/// `retailer_id`, `product_id`) and a `name` (or `title`); a variant without a name of its own
/// (an id and a `label`, inside a product) is named after its product (`Figuier 300 g`). Its
/// price is the object's `price` as written (or `price_cents` with the nearest `currency`),
/// its picture an http(s) `image_url`, its availability `available` or `in_stock`.
pub fn products_in(outputs: &[String]) -> HashMap<String, Product> {
    let mut found = HashMap::new();
    for output in outputs {
        if let Ok(value) = serde_json::from_str::<Value>(output) {
            walk(&value, None, None, 0, &mut found);
        }
    }
    found
}

fn walk(
    value: &Value,
    parent: Option<&Product>,
    currency: Option<&str>,
    depth: usize,
    found: &mut HashMap<String, Product>,
) {
    if depth > MAX_DEPTH || found.len() >= MAX_PRODUCTS {
        return;
    }
    match value {
        Value::Array(items) => {
            for item in items {
                walk(item, parent, currency, depth + 1, found);
            }
        }
        Value::Object(map) => {
            let currency = map.get("currency").and_then(Value::as_str).or(currency);
            let product = product_of(map, parent, currency);
            if let Some(product) = &product {
                found
                    .entry(product.id.clone())
                    .or_insert_with(|| product.clone());
            }
            for (_, child) in map {
                if child.is_object() || child.is_array() {
                    walk(
                        child,
                        product.as_ref().or(parent),
                        currency,
                        depth + 1,
                        found,
                    );
                }
            }
        }
        _ => {}
    }
}

fn text_of(map: &serde_json::Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|k| map.get(*k).and_then(Value::as_str))
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(|s| clip_text(s, Product::MAX_FIELD))
}

fn product_of(
    map: &serde_json::Map<String, Value>,
    parent: Option<&Product>,
    currency: Option<&str>,
) -> Option<Product> {
    let id = text_of(map, &ID_KEYS)?;
    let name = match (text_of(map, &["name", "title"]), text_of(map, &["label"])) {
        (Some(name), _) => name,
        (None, Some(label)) => format!("{} {label}", parent?.name),
        (None, None) => return None,
    };
    let price = text_of(map, &["price"]).or_else(|| {
        let cents = map.get("price_cents").and_then(Value::as_i64)?;
        let amount = format!("{}.{:02}", cents / 100, (cents % 100).abs());
        Some(match currency {
            Some(currency) => format!("{amount} {currency}"),
            None => amount,
        })
    });
    let image = text_of(map, &IMAGE_KEYS)
        .filter(|url| followable(url))
        .or_else(|| parent.and_then(|p| p.image.clone()));
    let available = ["available", "in_stock"]
        .iter()
        .find_map(|k| map.get(*k).and_then(Value::as_bool));
    Some(Product {
        id,
        name,
        price,
        image,
        available,
    })
}

/// An http(s) URL without credentials: what the gateway may put in a button or fetch.
pub fn followable(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    matches!(parsed.scheme(), "https" | "http")
        && parsed.host_str().is_some()
        && parsed.username().is_empty()
        && parsed.password().is_none()
}

/// The payment button a tool's answer asks for: its top-level `payment_url` (http(s), no
/// credentials), with `payment_label` on the button (else "Pay") and `payment_text` above it
/// (else the label).
pub fn payment_in(output: &str) -> Option<PaymentButton> {
    let value: Value = serde_json::from_str(output).ok()?;
    let map = value.as_object()?;
    let url = map.get("payment_url")?.as_str()?.trim();
    if !followable(url) || url.len() > 2000 {
        return None;
    }
    let label = text_of(map, &["payment_label"])
        .map(|l| clip_text(&l, MAX_LABEL))
        .unwrap_or_else(|| "Pay".to_string());
    let text = text_of(map, &["payment_text"])
        .map(|t| clip_text(&t, MAX_TEXT))
        .unwrap_or_else(|| label.clone());
    Some(PaymentButton {
        url: url.to_string(),
        label,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn products_and_their_variants_are_read_from_a_search_and_a_detail() {
        let search = json!({
            "currency": "EUR",
            "products": [
                { "sku": "BOU-FIGUIER", "name": "Figuier", "price": "€28.00 to €58.00", "available": true,
                  "image_url": "https://cdn.example/fig.jpg" },
                { "sku": "BOU-X", "name": "X", "price_cents": 3850, "available": false, "image_url": "javascript:alert(1)" },
            ]
        });
        let detail = json!({
            "sku": "BOU-FIGUIER", "name": "Figuier",
            "variants": [{ "sku": "BOU-FIGUIER-300", "label": "300 g", "price": "€38.00", "in_stock": true }]
        });
        let found = products_in(&[search.to_string(), detail.to_string(), "not json".into()]);
        assert_eq!(
            found["BOU-FIGUIER"].price.as_deref(),
            Some("€28.00 to €58.00")
        );
        assert_eq!(
            found["BOU-FIGUIER"].image.as_deref(),
            Some("https://cdn.example/fig.jpg")
        );
        assert_eq!(found["BOU-X"].price.as_deref(), Some("38.50 EUR"));
        assert_eq!(found["BOU-X"].image, None, "only an http(s) picture");
        assert_eq!(found["BOU-X"].available, Some(false));
        assert_eq!(found["BOU-FIGUIER-300"].name, "Figuier 300 g");
        assert_eq!(found["BOU-FIGUIER-300"].available, Some(true));
        assert_eq!(found.len(), 3);
    }

    #[test]
    fn a_payment_button_needs_a_top_level_followable_url() {
        let ok = json!({ "order": "ML-1", "payment_url": "https://pay.example/p/1", "payment_label": "Pay €38.00 now, securely" });
        let button = payment_in(&ok.to_string()).unwrap();
        assert_eq!(button.url, "https://pay.example/p/1");
        assert_eq!(button.label.chars().count(), MAX_LABEL);
        assert_eq!(button.text, button.label);
        for bad in [
            json!({ "payment_url": "javascript:alert(1)" }),
            json!({ "payment_url": "https://user:pw@pay.example/" }),
            json!({ "order": { "payment_url": "https://pay.example/nested" } }),
            json!(["https://pay.example/"]),
        ] {
            assert_eq!(payment_in(&bad.to_string()), None, "{bad}");
        }
    }
}
