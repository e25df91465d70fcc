//! What a conversation holds of buying in the chat, kept with the conversation on both
//! stores: the cart the gateway keeps for chat apps without one of their own ("Add to cart"
//! buttons; a WhatsApp cart replaces it), and the forms sent and not answered yet (a
//! WhatsApp Flow's token). Written only from the conversation's lane, so one writer at a time.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use concierge_domain::{CartLine, ConversationId, Millis, Product};

use crate::StoreError;

/// The most lines a cart keeps, and the most of one product.
pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: u32 = 99;
/// The most forms kept waiting for their answer (the oldest go first).
pub const MAX_OPEN_FLOWS: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommerceState {
    #[serde(default)]
    pub cart: Vec<CartLine>,
    #[serde(default)]
    pub flows: Vec<OpenFlow>,
    /// The inbox entry whose change was saved last: a turn worked again after a crash
    /// (its `seq` not above it) changes nothing twice.
    #[serde(default)]
    pub applied_seq: i64,
}

/// A form sent to the customer whose answer has not come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFlow {
    pub token: String,
    /// The `[[flows]]` name.
    pub flow: String,
    pub sent_at: Millis,
}

impl CommerceState {
    /// Puts one more of `product` in the cart; false when the cart is full.
    pub fn add(&mut self, product: &Product) -> bool {
        if let Some(line) = self.cart.iter_mut().find(|l| l.product.id == product.id) {
            line.quantity = (line.quantity + 1).min(MAX_QUANTITY);
            return true;
        }
        if self.cart.len() >= MAX_LINES {
            return false;
        }
        self.cart.push(CartLine {
            product: product.clone(),
            quantity: 1,
        });
        true
    }

    /// Sets how many of `product` the cart holds (0 takes it out); false when the cart is
    /// full.
    pub fn set_quantity(&mut self, product: &Product, quantity: u32) -> bool {
        let quantity = quantity.min(MAX_QUANTITY);
        if quantity == 0 {
            self.remove(&product.id);
            return true;
        }
        let full = self.cart.len() >= MAX_LINES;
        match self.cart.iter_mut().find(|l| l.product.id == product.id) {
            Some(line) => line.quantity = quantity,
            None if full => return false,
            None => self.cart.push(CartLine {
                product: product.clone(),
                quantity,
            }),
        }
        true
    }

    /// Takes a product out of the cart; false when it was not in it.
    pub fn remove(&mut self, product: &str) -> bool {
        let before = self.cart.len();
        self.cart.retain(|l| l.product.id != product);
        self.cart.len() != before
    }

    /// The cart as lines a person reads (`2 × Figuier 300 g, €38.00`).
    pub fn cart_lines(&self) -> Vec<String> {
        self.cart.iter().map(CartLine::line).collect()
    }

    /// Remembers a form sent, forgetting the oldest past [`MAX_OPEN_FLOWS`].
    pub fn open_flow(&mut self, flow: OpenFlow) {
        self.flows.push(flow);
        let over = self.flows.len().saturating_sub(MAX_OPEN_FLOWS);
        self.flows.drain(..over);
    }

    /// The form sent under `token`, taken out (answered once), if it was sent after
    /// `since`.
    pub fn answer_flow(&mut self, token: &str, since: Millis) -> Option<OpenFlow> {
        let at = self.flows.iter().position(|f| f.token == token)?;
        let flow = self.flows.remove(at);
        (flow.sent_at >= since).then_some(flow)
    }
}

#[async_trait]
pub trait Commerce: Send + Sync {
    /// The conversation's cart and open forms (empty when it has none).
    async fn commerce(&self, id: &ConversationId) -> Result<CommerceState, StoreError>;

    /// Replaces them.
    async fn set_commerce(
        &self,
        id: &ConversationId,
        state: &CommerceState,
    ) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str) -> Product {
        Product {
            id: id.into(),
            name: id.into(),
            price: None,
            image: None,
            available: None,
        }
    }

    #[test]
    fn a_cart_adds_sets_and_removes_within_its_bounds() {
        let mut state = CommerceState::default();
        assert!(state.add(&product("A")));
        assert!(state.add(&product("A")));
        assert_eq!(state.cart[0].quantity, 2);
        assert!(state.set_quantity(&product("A"), 500));
        assert_eq!(state.cart[0].quantity, MAX_QUANTITY);
        assert!(state.set_quantity(&product("A"), 0));
        assert!(state.cart.is_empty());
        for i in 0..MAX_LINES {
            assert!(state.add(&product(&i.to_string())));
        }
        assert!(!state.add(&product("one too many")));
        assert!(state.remove("3"));
        assert!(!state.remove("3"));
    }

    #[test]
    fn a_form_is_answered_once_and_only_while_fresh() {
        let mut state = CommerceState::default();
        for i in 0..12 {
            state.open_flow(OpenFlow {
                token: format!("t{i}"),
                flow: "address".into(),
                sent_at: i,
            });
        }
        assert_eq!(state.flows.len(), MAX_OPEN_FLOWS);
        assert_eq!(state.answer_flow("t0", 0), None, "forgotten");
        assert_eq!(state.answer_flow("t5", 0).unwrap().flow, "address");
        assert_eq!(state.answer_flow("t5", 0), None, "answered once");
        assert_eq!(state.answer_flow("t6", 7), None, "expired");
    }
}
