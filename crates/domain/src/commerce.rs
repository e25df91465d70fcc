//! What buying in the chat carries: a product as the merchant's systems described it, the
//! button ids of "Add to cart", and an event the merchant's systems report about a
//! conversation (a payment, a shipment). All of it is data from the merchant, never the
//! model's words.

use serde::{Deserialize, Serialize};

/// A product shown in the chat: every field from a merchant tool's answer, never from the
/// model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// The merchant's id (a SKU, the catalogue's retailer id).
    pub id: String,
    pub name: String,
    /// The price as the customer reads it (`€38.00`, `28.00 EUR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// An http(s) picture of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Whether it can be bought now, when the tool said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
}

impl Product {
    /// The most products one message shows (WhatsApp's multi-product message holds 30).
    pub const MAX_PER_MESSAGE: usize = 30;
    /// The longest id, name or price kept, in characters.
    pub const MAX_FIELD: usize = 200;

    /// The product as one line a person reads: `Figuier 300 g, €38.00 (sold out)`.
    pub fn line(&self) -> String {
        let mut line = self.name.clone();
        if let Some(price) = &self.price {
            line.push_str(&format!(", {price}"));
        }
        if self.available == Some(false) {
            line.push_str(" (sold out)");
        }
        line
    }

    /// The id of the button that puts it in the cart.
    pub fn add_choice_id(&self) -> String {
        format!("{ADD_TO_CART}{}", self.id)
    }

    /// The id of the button that takes it out of the cart.
    pub fn remove_choice_id(&self) -> String {
        format!("{REMOVE_FROM_CART}{}", self.id)
    }
}

/// A product in a cart, as the merchant's tool described it when it was shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartLine {
    pub product: Product,
    pub quantity: u32,
}

impl CartLine {
    /// The line as a person reads it (`2 × Figuier 300 g, €38.00`).
    pub fn line(&self) -> String {
        format!("{} × {}", self.quantity, self.product.line())
    }
}

/// The prefix of an "Add to cart" button's id; the product's id follows.
pub const ADD_TO_CART: &str = "cart:add:";
/// The prefix of a "Remove" button's id in a cart; the product's id follows.
pub const REMOVE_FROM_CART: &str = "cart:remove:";
/// The id of the "View cart" button.
pub const VIEW_CART: &str = "cart:view";
/// The id of the "Checkout" button: the agents take it from there.
pub const CHECKOUT: &str = "cart:checkout";

/// The most a merchant event's data may hold, as JSON.
pub const MAX_EVENT_BYTES: usize = 8 * 1024;

/// Whether `name` can be a merchant event's type: 1 to 64 characters of letters, digits and
/// `._-` (`payment.succeeded`, `order.shipped`).
pub fn event_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_reads_as_one_line_and_names_its_buttons() {
        let p = Product {
            id: "BOU-FIGUIER-300".into(),
            name: "Figuier 300 g".into(),
            price: Some("€38.00".into()),
            image: None,
            available: Some(false),
        };
        assert_eq!(p.add_choice_id(), "cart:add:BOU-FIGUIER-300");
        assert_eq!(p.remove_choice_id(), "cart:remove:BOU-FIGUIER-300");
        assert_eq!(p.line(), "Figuier 300 g, €38.00 (sold out)");
    }

    #[test]
    fn event_names_are_short_plain_words() {
        assert!(event_name_ok("payment.succeeded"));
        assert!(event_name_ok("order_shipped-2"));
        assert!(!event_name_ok(""));
        assert!(!event_name_ok("payment succeeded"));
        assert!(!event_name_ok(&"x".repeat(65)));
    }
}
