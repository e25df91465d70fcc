//! The cart the gateway keeps for chat apps without one of their own, before the agents and
//! without the LLM: an "Add to cart", "Remove" or "View cart" button the customer pressed
//! changes the conversation's cart (a product the gateway showed in this conversation, as
//! the merchant's tool described it) and is answered with the cart and a "Checkout" button,
//! which the agents take from there. A WhatsApp cart (`order`) replaces the kept one and
//! goes on to the agents. `[commerce]`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;

use super::responder::{DecidedBy, Decision, Responder, ResponderError, Turn};
use concierge_channels::choice_id::same_choice;
use concierge_domain::commerce::{ADD_TO_CART, CHECKOUT, REMOVE_FROM_CART, VIEW_CART};
use concierge_domain::{Author, CartLine, Choice, Content, Direction, Product};
use concierge_faq::{Lang, detect_language};
use concierge_store::CommerceState;
use concierge_telemetry::Metrics;

/// How many of the latest messages are searched for the products shown.
const SHOWN_WITHIN: usize = 60;
/// The most "Remove" buttons a cart shows (with "Checkout", within a list's 10 rows).
const MAX_REMOVE_BUTTONS: usize = 9;

/// `[commerce]` of `concierge.toml`: the words of the cart, per language (the customer's,
/// as the FAQ detects it; English when it is none of these).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommerceConfig {
    /// `{product}` is the product's name.
    pub added: BTreeMap<String, String>,
    pub removed: BTreeMap<String, String>,
    pub cart: BTreeMap<String, String>,
    pub empty: BTreeMap<String, String>,
    pub full: BTreeMap<String, String>,
    pub checkout: BTreeMap<String, String>,
    pub view_cart: BTreeMap<String, String>,
    pub remove: BTreeMap<String, String>,
}

impl Default for CommerceConfig {
    fn default() -> Self {
        let text = |en: &str, fr: &str| {
            BTreeMap::from([
                ("en".to_string(), en.to_string()),
                ("fr".to_string(), fr.to_string()),
            ])
        };
        CommerceConfig {
            added: text(
                "{product} is in your cart.",
                "{product} est dans votre panier.",
            ),
            removed: text(
                "{product} is out of your cart.",
                "{product} est retiré de votre panier.",
            ),
            cart: text("Your cart:", "Votre panier :"),
            empty: text("Your cart is empty.", "Votre panier est vide."),
            full: text(
                "Your cart is full: remove something first.",
                "Votre panier est plein : retirez d'abord un article.",
            ),
            checkout: text("Checkout", "Commander"),
            view_cart: text("View cart", "Voir le panier"),
            remove: text("Remove {product}", "Retirer {product}"),
        }
    }
}

impl CommerceConfig {
    /// Keys whose texts are missing an English one, or are empty.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (key, texts) in self.texts() {
            if !texts.contains_key("en") {
                problems.push((
                    key.to_string(),
                    "needs an `en` text (the fallback)".to_string(),
                ));
            }
            for (lang, text) in texts {
                if text.trim().is_empty() || text.chars().count() > 200 {
                    problems.push((
                        format!("{key}.{lang}"),
                        "is 1 to 200 characters".to_string(),
                    ));
                }
            }
        }
        problems
    }

    fn texts(&self) -> [(&'static str, &BTreeMap<String, String>); 8] {
        [
            ("added", &self.added),
            ("removed", &self.removed),
            ("cart", &self.cart),
            ("empty", &self.empty),
            ("full", &self.full),
            ("checkout", &self.checkout),
            ("view_cart", &self.view_cart),
            ("remove", &self.remove),
        ]
    }
}

fn say(texts: &BTreeMap<String, String>, lang: &str, product: Option<&str>) -> String {
    let text = texts
        .get(lang)
        .or_else(|| texts.get("en"))
        .or_else(|| texts.values().next())
        .map(String::as_str)
        .unwrap_or_default();
    match product {
        Some(name) => text.replace("{product}", name),
        None => text.to_string(),
    }
}

/// What the pressed button asks, with the product it names.
enum Pressed {
    Add(Product),
    Remove(Product),
    View,
}

pub struct CartResponder {
    config: CommerceConfig,
    metrics: Metrics,
}

impl CartResponder {
    pub fn new(config: CommerceConfig, metrics: Metrics) -> Self {
        Self { config, metrics }
    }

    /// The products the gateway showed in the conversation lately (newest first), and the
    /// cart's.
    async fn known_products(
        &self,
        turn: &Turn<'_>,
        state: &CommerceState,
    ) -> Result<Vec<Product>, ResponderError> {
        let recent = turn
            .store
            .recent_messages(&turn.entry.conversation, SHOWN_WITHIN)
            .await?;
        let mut known: Vec<Product> = state.cart.iter().map(|l| l.product.clone()).collect();
        for m in recent.iter().rev() {
            if let (Direction::Outbound, Content::Products { products, .. }) =
                (&m.direction, &m.content)
            {
                known.extend(products.iter().cloned());
            }
        }
        Ok(known)
    }

    fn pressed(choice: &Choice, known: &[Product]) -> Option<Pressed> {
        if choice.id == VIEW_CART {
            return Some(Pressed::View);
        }
        known.iter().find_map(|p| {
            if same_choice(&p.add_choice_id(), &choice.id) {
                Some(Pressed::Add(p.clone()))
            } else if same_choice(&p.remove_choice_id(), &choice.id) {
                Some(Pressed::Remove(p.clone()))
            } else {
                None
            }
        })
    }

    /// The cart as the customer sees it: what happened, the lines, and the buttons.
    fn cart_message(&self, lang: &str, said: String, cart: &[CartLine]) -> Content {
        let t = &self.config;
        if cart.is_empty() {
            let empty = say(&t.empty, lang, None);
            return Content::text(if said.is_empty() {
                empty
            } else {
                format!("{said}\n{empty}")
            });
        }
        let lines: Vec<String> = cart.iter().map(|l| format!("• {}", l.line())).collect();
        let body = [said, say(&t.cart, lang, None), lines.join("\n")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let mut choices = vec![Choice::new(CHECKOUT, say(&t.checkout, lang, None))];
        choices.extend(cart.iter().take(MAX_REMOVE_BUTTONS).map(|l| {
            Choice::new(
                l.product.remove_choice_id(),
                say(&t.remove, lang, Some(&l.product.name)),
            )
        }));
        Content::Choices {
            body,
            choices,
            header: None,
            footer: None,
            button: Some(say(&t.view_cart, lang, None)),
        }
    }

    /// The customer's language, from their latest words in the conversation.
    async fn language(&self, turn: &Turn<'_>) -> Result<String, ResponderError> {
        let recent = turn
            .store
            .recent_messages(&turn.entry.conversation, 20)
            .await?;
        let words: Vec<&str> = recent
            .iter()
            .rev()
            .filter(|m| m.author == Author::Customer)
            .filter_map(|m| match &m.content {
                Content::Text { body } => Some(body.as_str()),
                _ => None,
            })
            .take(3)
            .collect();
        Ok(match detect_language(&words.join("\n")) {
            Some(Lang::Fr) => "fr",
            _ => "en",
        }
        .to_string())
    }
}

/// A WhatsApp cart as the kept cart: the products by their ids, at the price the platform
/// showed.
fn cart_of_order(items: &[concierge_domain::OrderItem]) -> Vec<CartLine> {
    items
        .iter()
        .take(concierge_store::commerce::MAX_LINES)
        .map(|item| CartLine {
            product: Product {
                id: item.product.clone(),
                name: item.product.clone(),
                price: item.unit_price.as_ref().map(|p| match &item.currency {
                    Some(c) => format!("{p} {c}"),
                    None => p.clone(),
                }),
                image: None,
                available: None,
            },
            quantity: item.quantity.min(concierge_store::commerce::MAX_QUANTITY),
        })
        .collect()
}

#[async_trait]
impl Responder for CartResponder {
    async fn respond(&self, turn: &Turn<'_>) -> Result<Option<Decision>, ResponderError> {
        let conversation = &turn.entry.conversation;
        let choice = match &turn.message.content {
            Content::Order { items, .. } => {
                let mut state = turn.store.commerce(conversation).await?;
                state.cart = cart_of_order(items);
                turn.store.set_commerce(conversation, &state).await?;
                // The agents read the order and take it from there.
                return Ok(None);
            }
            Content::Choice(choice)
                if choice.id == VIEW_CART
                    || choice.id.starts_with(ADD_TO_CART)
                    || choice.id.starts_with(REMOVE_FROM_CART)
                    // A platform may have fitted a long id to its limit.
                    || (choice.id.starts_with("cart:") && choice.id.contains('~')) =>
            {
                choice
            }
            _ => return Ok(None),
        };
        let mut state = turn.store.commerce(conversation).await?;
        let known = self.known_products(turn, &state).await?;
        let Some(pressed) = Self::pressed(choice, &known) else {
            // Not a product shown here (an old button, a forged id): the agents answer.
            self.metrics.commerce("cart_unknown_product");
            return Ok(None);
        };
        let lang = self.language(turn).await?;
        let t = &self.config;
        // A turn worked again after a crash finds its change already saved.
        let again = turn.entry.seq <= state.applied_seq;
        let said = match &pressed {
            Pressed::Add(product) => {
                self.metrics.commerce("cart_add");
                if again || state.add(product) {
                    say(&t.added, &lang, Some(&product.name))
                } else {
                    say(&t.full, &lang, None)
                }
            }
            Pressed::Remove(product) => {
                self.metrics.commerce("cart_remove");
                if !again {
                    state.remove(&product.id);
                }
                say(&t.removed, &lang, Some(&product.name))
            }
            Pressed::View => {
                self.metrics.commerce("cart_view");
                String::new()
            }
        };
        if !again && !matches!(pressed, Pressed::View) {
            state.applied_seq = turn.entry.seq;
            turn.store.set_commerce(conversation, &state).await?;
        }
        let reply = self.cart_message(&lang, said, &state.cart);
        Ok(Some(Decision::new(
            DecidedBy::Cart,
            vec![(Author::System, reply)],
        )))
    }
}
