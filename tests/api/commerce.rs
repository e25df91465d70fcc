//! Buying in the chat, end to end over real HTTP: the agents show products a merchant tool
//! described (the Graph API gets a multi-product message from the catalogue, Telegram a list
//! with cart buttons, the web chat product cards), never a name or a price the model wrote;
//! a cart button is answered by the gateway without the LLM; a WhatsApp cart goes to the
//! merchant's checkout and the payment button follows the reply as `cta_url`; the merchant's
//! payment event is told to the customer once, and not at all over a person; a form goes out
//! with its token and its answers come back matched to it.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fake_llm::{FakeLlm, FakeShop, last_user_text, text, tool};
use crate::helpers::{Deployment, TestApp, eventually, spawn_in, visitor_key};
use crate::whatsapp::fixture;
use concierge::app::Parts;
use concierge::domain::{Author, Content, ConversationId, Direction, ThreadState};
use concierge_testkit::platform::FakeApi;

const WA_SECRET: &str = "commerce-app-secret";
const TG_SECRET: &str = "commerce-telegram-secret";
const PHONE: &str = "33612345678";
const TG_CHAT: i64 = 1000000001;
const CATALOG: &str = "354160437058781";
const FRONT_DESK: &str = "+++\ndescription = \"The front desk.\"\nentry = true\ntools = [\"search\", \"checkout\", \"show_products\", \"view_cart\", \"update_cart\", \"open_flow\"]\n+++\nYou are the front desk of {{ merchant }} on {{ channel.kind }}.\n";

struct Shop {
    app: TestApp,
    api: FakeApi,
    llm: FakeLlm,
    shop: FakeShop,
    token: String,
}

async fn start() -> Shop {
    let llm = FakeLlm::start().await;
    let shop = FakeShop::start().await;
    let api = FakeApi::start().await.expect("the fake platform");
    let deployment = Deployment::new(&format!(
        r#"[llm]
provider = "openai"
model = "test-model"
base_url = "{llm}/v1"
api_key = "k"
timeout_secs = 2
max_retries = 1

[merchant]
name = "Maison Test"
timezone = "Europe/Paris"

[[tools]]
name = "search"
description = "Search the catalogue."
url = "{shop}/products"
parameters = {{ type = "object", properties = {{ q = {{ type = "string" }} }} }}

[[tools]]
name = "checkout"
description = "Create the order from the cart; answers a payment link."
method = "POST"
url = "{shop}/checkout"
parameters = {{ type = "object", properties = {{ items = {{ type = "array", items = {{ type = "object" }} }}, delivery = {{ type = "string" }} }}, required = ["items"] }}

[[flows]]
name = "delivery_address"
flow_id = "1187351356327089"
description = "The delivery address: street, postcode, city, and a phone number for the carrier."
cta = "Give my address"
screen = "ADDRESS"
"#,
        llm = llm.url,
        shop = shop.url
    ));
    let root = deployment.path();
    std::fs::write(root.join("prompts/front_desk.md"), FRONT_DESK).unwrap();
    std::fs::write(
        root.join("channels/whatsapp.toml"),
        format!(
            "kind = \"whatsapp\"\nphone_number_id = \"100000000000001\"\naccess_token = \"t\"\napp_secret = \"{WA_SECRET}\"\nverify_token = \"v\"\napi_base = \"{}/v23.0\"\ncatalog_id = \"{CATALOG}\"\nmessages_per_second = 1000\nnew_conversations_per_minute = 0\n",
            api.url
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("channels/telegram.toml"),
        format!(
            "kind = \"telegram\"\nbot_token = \"123456:TEST-TOKEN\"\nsecret_token = \"{TG_SECRET}\"\napi_base = \"{}\"\nmessages_per_second_per_chat = 50\n",
            api.url
        ),
    )
    .unwrap();
    let app = spawn_in(deployment, Parts::default()).await;
    let token = concierge::handoff::access::issue_service(
        app.store().as_ref(),
        "payments",
        &["events".into()],
    )
    .await
    .unwrap();
    Shop {
        app,
        api,
        llm,
        shop,
        token,
    }
}

impl Shop {
    /// A signed Cloud API notification carrying one message of the customer.
    async fn whatsapp_message(&self, message: Value) {
        let payload = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "200000000000002", "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550100000", "phone_number_id": "100000000000001" },
                "contacts": [{ "profile": { "name": "Claire" }, "wa_id": PHONE }],
                "messages": [message],
            }}]}]
        }))
        .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(WA_SECRET.as_bytes()).unwrap();
        mac.update(&payload);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let status = self
            .app
            .client
            .post(self.app.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(payload)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    async fn whatsapp(&self, wamid: &str, body: &str) {
        self.whatsapp_message(json!({
            "from": PHONE, "id": wamid, "timestamp": crate::media::now_secs(),
            "type": "text", "text": { "body": body }
        }))
        .await;
    }

    async fn telegram(&self, update_id: i64, body: &str) {
        let mut update: Value = serde_json::from_slice(&fixture("telegram_text.json")).unwrap();
        update["update_id"] = json!(update_id);
        update["message"]["message_id"] = json!(update_id);
        update["message"]["text"] = json!(body);
        update["message"]["chat"]["id"] = json!(TG_CHAT);
        update["message"]["from"]["id"] = json!(TG_CHAT);
        update["message"]["date"] = json!(crate::media::now_secs().parse::<i64>().unwrap());
        let status = self
            .app
            .client
            .post(self.app.url("/webhooks/telegram"))
            .header("content-type", "application/json")
            .header("x-telegram-bot-api-secret-token", TG_SECRET)
            .body(serde_json::to_vec(&update).unwrap())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    /// Posts a merchant event to a conversation with `token`.
    async fn event(&self, token: &str, conversation: &str, body: Value) -> (u16, Value) {
        let response = self
            .app
            .client
            .post(
                self.app
                    .url(&format!("/api/v1/conversations/{conversation}/events")),
            )
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until the Graph API got `n` sends, and returns them.
    async fn graph_sends(&self, n: usize) -> Vec<Value> {
        eventually(&format!("{n} sends reach WhatsApp"), || async {
            self.api.sends().len() >= n
        })
        .await;
        self.api.sends()
    }

    async fn outbound(&self, conversation: &ConversationId, n: usize) -> Vec<Content> {
        eventually(&format!("{n} replies are queued"), || async {
            self.outbound_now(conversation).await.len() >= n
        })
        .await;
        self.outbound_now(conversation).await
    }

    async fn outbound_now(&self, conversation: &ConversationId) -> Vec<Content> {
        self.app
            .store()
            .messages(conversation, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.direction == Direction::Outbound)
            .map(|m| m.content)
            .collect()
    }

    /// What the model read back from its tool calls, in order.
    fn tool_results(&self) -> Vec<String> {
        let calls = self.llm.calls();
        let Some(last) = calls.last() else {
            return Vec::new();
        };
        last.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// The script of a catalogue answer: search, an id the tool never gave (refused), the two
/// candles, then a short line without a name or a price.
fn shows_two_candles() -> Vec<crate::fake_llm::Step> {
    vec![
        tool("search", json!({ "q": "fig" })),
        tool(
            "show_products",
            json!({ "products": ["BOU-INVENTED"], "text": "Look" }),
        ),
        tool(
            "show_products",
            json!({ "products": ["BOU-FIGUIER-300", "BOU-FIGUE-NOIRE"], "text": "Two fig candles for your sister" }),
        ),
        text("Shall I put one aside?"),
    ]
}

#[tokio::test]
async fn products_reach_each_platform_in_its_own_form_from_the_tools_words_only() {
    let s = start().await;
    s.llm.script(shows_two_candles());
    s.whatsapp("wamid.P1", "A fig candle for my sister, under €40?")
        .await;
    let sends = s.graph_sends(2).await;
    let list = &sends[0];
    assert_eq!(list["type"], "interactive");
    assert_eq!(list["interactive"]["type"], "product_list");
    let action = &list["interactive"]["action"];
    assert_eq!(action["catalog_id"], CATALOG);
    assert_eq!(
        action["sections"][0]["product_items"],
        json!([{ "product_retailer_id": "BOU-FIGUIER-300" }, { "product_retailer_id": "BOU-FIGUE-NOIRE" }])
    );
    assert_eq!(
        list["interactive"]["body"]["text"],
        "Two fig candles for your sister"
    );
    assert_eq!(sends[1]["text"]["body"], "Shall I put one aside?");
    // The invented id was refused, and the model told why.
    let results = s.tool_results();
    assert!(
        results[1].contains("no tool described a product `BOU-INVENTED`"),
        "{results:?}"
    );
    // The stored products carry the tool's names and prices, which the model never wrote.
    let conversation = s.app.conversation("whatsapp", PHONE).await;
    let shown = s.outbound(&conversation, 2).await;
    let Content::Products { products, .. } = &shown[0] else {
        panic!("{shown:?}");
    };
    assert_eq!(products[0].name, "Figuier 300 g");
    assert_eq!(products[0].price.as_deref(), Some("€38.00"));
    assert_eq!(products[1].available, Some(false));
    let said: String = s
        .llm
        .calls()
        .iter()
        .map(|c| c.body.to_string())
        .collect::<Vec<_>>()
        .join("");
    // The model's own requests hold the prices only in what the tool answered.
    assert!(
        !shows_two_candles()
            .iter()
            .any(|step| format!("{step:?}").contains("38"))
    );
    assert!(
        said.contains("€38.00"),
        "the tool's answer reached the model"
    );

    // Telegram: one message listing both, a cart button for the one in stock.
    s.llm.script(shows_two_candles());
    s.telegram(9001, "Une bougie à la figue ?").await;
    eventually("Telegram gets the products", || async {
        s.api
            .telegram_calls()
            .iter()
            .any(|(method, body)| method == "sendMessage" && body["reply_markup"].is_object())
    })
    .await;
    let calls = s.api.telegram_calls();
    let (_, listed) = calls
        .iter()
        .find(|(method, body)| method == "sendMessage" && body["reply_markup"].is_object())
        .unwrap();
    let listing = listed["text"].as_str().unwrap();
    assert!(
        listing.starts_with("Two fig candles for your sister"),
        "{listing}"
    );
    assert!(listing.contains("1. Figuier 300 g, €38.00"), "{listing}");
    assert!(
        listing.contains("2. Figue noire 180 g, €28.00 (sold out)"),
        "{listing}"
    );
    let keyboard = listed["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap();
    assert_eq!(keyboard.len(), 1, "no button for the sold-out one");
    assert_eq!(keyboard[0][0]["callback_data"], "cart:add:BOU-FIGUIER-300");

    // The web chat: cards, then "Add to cart" answered by the gateway, without the LLM.
    s.llm.script(shows_two_candles());
    let key = visitor_key("commerce");
    let mut stream = s.app.open_stream(&key).await;
    assert_eq!(
        s.app.post_text(&key, "w1", "fig candle?").await.status(),
        200
    );
    let cards = loop {
        let event = stream.next().await;
        if !event.products.is_empty() {
            break event;
        }
    };
    assert_eq!(cards.text, "Two fig candles for your sister");
    assert_eq!(cards.products[0].name, "Figuier 300 g");
    assert_eq!(cards.products[0].price.as_deref(), Some("€38.00"));
    assert_eq!(
        cards.products[0].image.as_deref(),
        Some("https://cdn.maison.example/figuier.jpg")
    );
    assert!(cards.products[1].add.is_none(), "sold out: no button");
    let add = cards.products[0].add.clone().unwrap();
    let llm_calls = s.llm.count();
    let posted = s
        .app
        .client
        .post(s.app.url("/webhooks/web"))
        .header("x-webchat-key", &key)
        .json(&json!({ "id": "w2", "choice": { "id": add.id, "title": add.title } }))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let cart = loop {
        let event = stream.next().await;
        if event.direction == "out" && event.text.contains("in your cart") {
            break event;
        }
    };
    assert!(
        cart.text.contains("1 × Figuier 300 g, €38.00"),
        "{}",
        cart.text
    );
    assert_eq!(cart.choices[0].id, "cart:checkout");
    assert_eq!(cart.choices[1].id, "cart:remove:BOU-FIGUIER-300");
    assert_eq!(s.llm.count(), llm_calls, "the cart needs no LLM call");
    let web = s.app.visitor_conversation(&key).await;
    let kept = s.app.store().commerce(&web).await.unwrap();
    assert_eq!(kept.cart.len(), 1);
    assert_eq!(kept.cart[0].product.id, "BOU-FIGUIER-300");
    // "Checkout" goes to the agents, who read the cart as the gateway keeps it.
    s.llm
        .script(vec![tool("view_cart", json!({})), text("Two, then.")]);
    let checkout = json!({ "id": "w3", "choice": { "id": "cart:checkout", "title": "Checkout" } });
    s.app
        .client
        .post(s.app.url("/webhooks/web"))
        .header("x-webchat-key", &key)
        .json(&checkout)
        .send()
        .await
        .unwrap();
    eventually("the agents read the cart", || async {
        s.tool_results()
            .iter()
            .any(|r| r.contains("\"id\":\"BOU-FIGUIER-300\"") && r.contains("\"quantity\":1"))
    })
    .await;
}

#[tokio::test]
async fn a_whatsapp_cart_goes_to_checkout_and_the_payment_button_follows_the_reply() {
    let s = start().await;
    s.llm.script(vec![
        tool("view_cart", json!({})),
        tool(
            "checkout",
            json!({ "items": [{ "sku": "BOU-FIGUIER-300", "quantity": 2 }], "delivery": "colissimo" }),
        ),
        text("Your order ML-20001 is ready: €76.00, delivery included."),
    ]);
    s.whatsapp_message(json!({
        "from": PHONE, "id": "wamid.ORDER1", "timestamp": crate::media::now_secs(), "type": "order",
        "order": { "catalog_id": CATALOG, "text": "For my sister",
                   "product_items": [{ "product_retailer_id": "BOU-FIGUIER-300", "quantity": 2, "item_price": 38, "currency": "EUR" }] }
    }))
    .await;
    let sends = s.graph_sends(2).await;
    // The model read the cart with its ids, quantities and prices.
    let first = &s.llm.calls()[0];
    let user = last_user_text(&first.body);
    assert!(
        user.contains("2 × BOU-FIGUIER-300 at 38 EUR") && user.contains("For my sister"),
        "{user}"
    );
    let results = s.tool_results();
    assert!(
        results[0].contains("\"id\":\"BOU-FIGUIER-300\"") && results[0].contains("\"quantity\":2"),
        "{results:?}"
    );
    let checkout = s
        .shop
        .calls()
        .into_iter()
        .find(|c| c.path == "/checkout")
        .expect("the checkout was called");
    assert_eq!(
        checkout.body["items"],
        json!([{ "sku": "BOU-FIGUIER-300", "quantity": 2 }])
    );
    assert_eq!(
        sends[0]["text"]["body"],
        "Your order ML-20001 is ready: €76.00, delivery included."
    );
    let button = &sends[1];
    assert_eq!(button["interactive"]["type"], "cta_url");
    assert_eq!(
        button["interactive"]["action"]["parameters"],
        json!({ "display_text": "Pay €76.00", "url": "https://pay.maison.example/p/ML-20001" })
    );
    assert_eq!(
        button["interactive"]["body"]["text"],
        "Order ML-20001: €76.00, delivery included."
    );
    assert_eq!(sends.len(), 2);
}

#[tokio::test]
async fn a_url_the_model_typed_never_becomes_a_payment_button() {
    let s = start().await;
    s.llm
        .script(vec![text("Pay here: https://evil.example/pay please.")]);
    s.whatsapp("wamid.U1", "How do I pay?").await;
    let sends = s.graph_sends(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.api.sends().len(), 1);
    assert_eq!(sends[0]["type"], "text");
}

#[tokio::test]
async fn a_payment_event_is_told_once_and_never_over_a_person() {
    let s = start().await;
    s.llm.script(vec![text("Bonjour Claire !")]);
    s.whatsapp("wamid.E0", "Bonjour").await;
    s.graph_sends(1).await;
    let conversation = s.app.conversation("whatsapp", PHONE).await;
    let paid = json!({ "id": "evt_1", "type": "payment.succeeded",
                       "data": { "order": "ML-20001", "amount": "€76.00" } });

    // Refusals first: no scope, a bad body, no such conversation; nothing is taken.
    let notify = concierge::handoff::access::issue_service(
        s.app.store().as_ref(),
        "crm",
        &["notify".into()],
    )
    .await
    .unwrap();
    assert_eq!(
        s.event(&notify, conversation.as_str(), paid.clone())
            .await
            .0,
        403
    );
    assert_eq!(
        s.event("not-a-token", conversation.as_str(), paid.clone())
            .await
            .0,
        401
    );
    let (status, body) = s
        .event(
            &s.token,
            conversation.as_str(),
            json!({ "id": "x", "type": "paid now!" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        s.event(&s.token, "c-nosuchconversation", paid.clone())
            .await
            .0,
        404
    );

    s.llm
        .script(vec![text("Votre paiement est bien reçu, merci !")]);
    let (status, accepted) = s.event(&s.token, conversation.as_str(), paid.clone()).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["duplicate"], false);
    let sends = s.graph_sends(2).await;
    assert_eq!(
        sends[1]["text"]["body"],
        "Votre paiement est bien reçu, merci !"
    );
    let calls = s.llm.calls();
    assert_eq!(calls.len(), 2);
    let told = last_user_text(&calls[1].body);
    assert!(
        told.contains("payment.succeeded")
            && told.contains("ML-20001")
            && told.contains("payments"),
        "{told}"
    );
    // The same event again: taken once.
    let (status, again) = s.event(&s.token, conversation.as_str(), paid.clone()).await;
    assert_eq!(status, 202);
    assert_eq!(again["duplicate"], true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.llm.count(), 2);
    assert_eq!(s.api.sends().len(), 2);
    // Stored as the gateway's, shown in the thread.
    let messages = s.app.store().messages(&conversation, 0, 100).await.unwrap();
    let events: Vec<_> = messages
        .iter()
        .filter(|m| matches!(m.content, Content::Event { .. }))
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].author, Author::System);
    assert_eq!(events[0].direction, Direction::Inbound);

    // A person holds the thread: the event is kept, the bot says nothing.
    s.app
        .store()
        .set_thread_state(
            &conversation,
            ThreadState::Human {
                concierge: "ana".into(),
            },
        )
        .await
        .unwrap();
    let shipped =
        json!({ "id": "evt_2", "type": "order.shipped", "data": { "tracking": "6A123" } });
    assert_eq!(
        s.event(&s.token, conversation.as_str(), shipped).await.0,
        202
    );
    eventually("the shipment is kept", || async {
        s.app
            .store()
            .messages(&conversation, 0, 100)
            .await
            .unwrap()
            .iter()
            .any(|m| m.content.describe().contains("order.shipped"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.llm.count(), 2, "no LLM call over a person");
    assert_eq!(s.api.sends().len(), 2, "no bot reply over a person");
    // The merchant event opened no window: the customer's words did.
    let last_in = s.app.store().last_inbound_at(&conversation).await.unwrap();
    assert_eq!(last_in, Some(messages[0].created_at));
}

#[tokio::test]
async fn a_form_goes_out_with_its_token_and_its_answers_come_back_matched() {
    let s = start().await;
    s.llm.script(vec![tool(
        "open_flow",
        json!({ "flow": "delivery_address", "text": "Where shall we deliver?", "data": { "order": "ML-20001" } }),
    )]);
    s.whatsapp("wamid.F1", "Deliver it please").await;
    let sends = s.graph_sends(1).await;
    let form = &sends[0]["interactive"];
    assert_eq!(form["type"], "flow");
    let p = &form["action"]["parameters"];
    assert_eq!(p["flow_id"], "1187351356327089");
    assert_eq!(p["flow_cta"], "Give my address");
    assert_eq!(p["flow_action"], "navigate");
    assert_eq!(p["flow_action_payload"]["screen"], "ADDRESS");
    assert_eq!(p["flow_action_payload"]["data"]["order"], "ML-20001");
    let token = p["flow_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("flow-"), "{token}");

    let answer = |wamid: &str, token: &str| {
        json!({
            "context": { "from": "15550100000", "id": "wamid.F1-sent" },
            "from": PHONE, "id": wamid, "timestamp": crate::media::now_secs(), "type": "interactive",
            "interactive": { "type": "nfm_reply", "nfm_reply": {
                "name": "flow", "body": "Sent",
                "response_json": json!({ "flow_token": token, "street": "14 rue Auguste Comte", "city": "Lyon", "postcode": "69002" }).to_string(),
            }}
        })
    };
    s.llm.script(vec![text("Thank you, we deliver to Lyon.")]);
    s.whatsapp_message(answer("wamid.F2", &token)).await;
    s.graph_sends(2).await;
    let told = last_user_text(&s.llm.calls()[1].body);
    assert!(
        told.contains("street: 14 rue Auguste Comte")
            && told.contains("the answers to our form `delivery_address`"),
        "{told}"
    );
    // An answer with a token we never sent: kept, and the agents are told it is unmatched.
    s.llm
        .script(vec![text("Could you give me your address again?")]);
    s.whatsapp_message(answer("wamid.F3", "flow-forged")).await;
    s.graph_sends(3).await;
    let told = last_user_text(&s.llm.calls()[2].body);
    assert!(told.contains("could not be matched"), "{told}");

    // A chat app without forms: the agent is told to ask the questions itself.
    s.llm.script(vec![
        tool(
            "open_flow",
            json!({ "flow": "delivery_address", "text": "Where?" }),
        ),
        text("What is your street, postcode and city?"),
    ]);
    let key = visitor_key("forms");
    assert_eq!(s.app.post_text(&key, "f1", "deliver").await.status(), 200);
    eventually("the web chat agent is told", || async {
        s.tool_results()
            .iter()
            .any(|r| r.contains("This chat app has no forms") && r.contains("postcode"))
    })
    .await;
}
