//! The demo shop's checkout and its stand-in payment provider: `POST /checkout` turns a cart
//! into an order and answers a payment link (`payment_url`, which the gateway shows as a
//! button); `/pay/{order}` is the page the customer opens from the chat, with a "Pay" and a
//! "Fail" button; choosing one tells the gateway through its events API
//! (`payment.succeeded` or `payment.failed`), as a real provider's webhook would, and `POST
//! /checkout/{order}/ship` and `/deliver` (the merchant's side) tell it `order.shipped` and
//! `order.delivered`. Orders are kept in memory.
//!
//! - `POST /checkout`: `{"items": [{"sku", "quantity"}], "delivery"?: "colissimo" | "pickup"}`
//!   for the conversation in `X-Concierge-Conversation`.
//! - `GET /checkout/{order}`: the order and its state.
//! - `GET /pay/{order}`, `POST /pay/{order}/succeed`, `POST /pay/{order}/fail`: the payment
//!   page (no token: it is the customer's).

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::demo_shop::Shop;

/// The most lines an order takes, and the most of one product.
const MAX_LINES: usize = 20;
const MAX_QUANTITY: u32 = 20;
/// Delivery by Colissimo, in cents (free from 60 €); pickup at the boutique is free.
const COLISSIMO_CENTS: u64 = 590;
const FREE_DELIVERY_FROM_CENTS: u64 = 6000;

/// Where the checkout says its payment page is, and how it reaches the gateway.
#[derive(Debug, Clone)]
pub struct CheckoutSettings {
    /// The shop's own address as the customer's browser reaches it (`http://127.0.0.1:8081`).
    pub public_url: String,
    /// The gateway's address and a service token with the `events` scope; without them the
    /// payment page records the payment but tells nobody.
    pub gateway: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PaymentState {
    Awaiting,
    Paid,
    Failed,
    Shipped,
    Delivered,
}

impl PaymentState {
    fn name(&self) -> &'static str {
        match self {
            PaymentState::Awaiting => "awaiting_payment",
            PaymentState::Paid => "paid",
            PaymentState::Failed => "payment_failed",
            PaymentState::Shipped => "shipped",
            PaymentState::Delivered => "delivered",
        }
    }
}

#[derive(Debug, Clone)]
struct Placed {
    id: String,
    conversation: String,
    lines: Vec<Value>,
    delivery: String,
    total_cents: u64,
    state: PaymentState,
}

struct Checkout {
    shop: Arc<Shop>,
    settings: CheckoutSettings,
    orders: Mutex<Vec<Placed>>,
    /// Built at the first event told (it needs the process's TLS provider, which the demo
    /// shop's binary installs first).
    http: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl Checkout {
    fn orders(&self) -> std::sync::MutexGuard<'_, Vec<Placed>> {
        self.orders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn find(&self, id: &str) -> Option<Placed> {
        self.orders().iter().find(|o| o.id == id).cloned()
    }

    /// Moves an order from one of `from` to `to`; the order as it is now, and whether it
    /// moved.
    fn advance(&self, id: &str, from: &[PaymentState], to: PaymentState) -> Option<(Placed, bool)> {
        let mut orders = self.orders();
        let order = orders.iter_mut().find(|o| o.id == id)?;
        let moved = from.contains(&order.state);
        if moved {
            order.state = to;
        }
        Some((order.clone(), moved))
    }

    /// Tells the gateway what happened to the order, as a payment provider's webhook would;
    /// the event id is the order's and the type's, so telling twice is answered once.
    async fn tell(&self, order: &Placed, kind: &str) -> Result<(), String> {
        let Some((gateway, token)) = &self.settings.gateway else {
            return Ok(());
        };
        let url = format!(
            "{}/api/v1/conversations/{}/events",
            gateway.trim_end_matches('/'),
            order.conversation
        );
        let body = json!({
            "id": format!("{}:{kind}", order.id),
            "type": kind,
            "data": {
                "order": order.id,
                "total": self.shop.money_of(order.total_cents),
                "items": order.lines,
                "delivery": order.delivery,
                "tracking": (kind == "order.shipped").then(|| format!("6A{}", &order.id[3..])),
            },
        });
        let http = self
            .http
            .get_or_init(|| {
                reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        let answer = http
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("the gateway cannot be reached: {e}"))?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(format!("the gateway answered {}", answer.status()))
        }
    }
}

#[derive(Debug, Deserialize)]
struct CheckoutRequest {
    #[serde(default)]
    items: Vec<CheckoutItem>,
    #[serde(default)]
    delivery: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CheckoutItem {
    #[serde(alias = "id", alias = "product")]
    sku: String,
    #[serde(default = "one")]
    quantity: u32,
}

fn one() -> u32 {
    1
}

fn refused(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The checkout and payment routes, for [`crate::demo_shop::router`] to serve beside the
/// catalogue. `/checkout` needs the shop's token like every tool route; the payment page is
/// the customer's, open.
pub fn routes(shop: Arc<Shop>, settings: CheckoutSettings) -> (Router, Router) {
    let checkout = Arc::new(Checkout {
        shop,
        settings,
        orders: Mutex::new(Vec::new()),
        http: std::sync::OnceLock::new(),
    });
    let tools = Router::new()
        .route("/checkout", post(place))
        .route("/checkout/{id}", get(order_view))
        .route("/checkout/{id}/ship", post(ship))
        .route("/checkout/{id}/deliver", post(deliver))
        .with_state(checkout.clone());
    let page = Router::new()
        .route("/pay/{id}", get(pay_page))
        .route("/pay/{id}/succeed", post(pay_succeed))
        .route("/pay/{id}/fail", post(pay_fail))
        .with_state(checkout);
    (tools, page)
}

async fn place(
    State(checkout): State<Arc<Checkout>>,
    headers: HeaderMap,
    body: Result<Json<CheckoutRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return refused(
            StatusCode::BAD_REQUEST,
            "The checkout needs {\"items\": [{\"sku\": …, \"quantity\": …}]}.",
        );
    };
    let Some(conversation) = headers
        .get("x-concierge-conversation")
        .and_then(|v| v.to_str().ok())
        .filter(|c| !c.is_empty())
    else {
        return refused(
            StatusCode::BAD_REQUEST,
            "The checkout only takes orders from a chat conversation.",
        );
    };
    if request.items.is_empty() || request.items.len() > MAX_LINES {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The cart is empty (or too long): add products first.",
        );
    }
    let delivery = request.delivery.as_deref().unwrap_or("colissimo");
    if !matches!(delivery, "colissimo" | "pickup") {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Delivery is `colissimo` (home delivery, free from €60) or `pickup` (at the boutique, free).",
        );
    }
    let shop = &checkout.shop;
    let mut lines = Vec::new();
    let mut subtotal = 0u64;
    for item in &request.items {
        let Some((name, label, price_cents, stock)) = shop.variant_for_checkout(&item.sku) else {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "There is no product {} to sell; for a product with sizes, give the size's reference (like BOU-FIGUIER-300).",
                    item.sku.trim()
                ),
            );
        };
        if item.quantity == 0 || item.quantity > MAX_QUANTITY {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("A quantity is 1 to {MAX_QUANTITY}."),
            );
        }
        if stock < item.quantity {
            return refused(
                StatusCode::CONFLICT,
                &format!(
                    "{name} {label} has only {stock} in stock: suggest fewer, another size or another scent."
                ),
            );
        }
        subtotal += price_cents * u64::from(item.quantity);
        lines.push(json!({
            "sku": item.sku.trim().to_uppercase(), "name": format!("{name} {label}"),
            "quantity": item.quantity, "price": shop.money_of(price_cents),
        }));
    }
    let shipping = match delivery {
        "colissimo" if subtotal < FREE_DELIVERY_FROM_CENTS => COLISSIMO_CENTS,
        _ => 0,
    };
    let total = subtotal + shipping;
    let id = {
        let mut orders = checkout.orders();
        let id = format!("ML-{}", 30001 + orders.len());
        orders.push(Placed {
            id: id.clone(),
            conversation: conversation.to_string(),
            lines: lines.clone(),
            delivery: delivery.to_string(),
            total_cents: total,
            state: PaymentState::Awaiting,
        });
        id
    };
    let money = shop.money_of(total);
    Json(json!({
        "order": id,
        "items": lines,
        "delivery": delivery,
        "shipping": shop.money_of(shipping),
        "total": money,
        "status": PaymentState::Awaiting.name(),
        "payment_url": format!("{}/pay/{id}", checkout.settings.public_url.trim_end_matches('/')),
        "payment_label": format!("Pay {money}"),
        "payment_text": match delivery {
            "pickup" => format!("Order {id}: {money}, to collect at the boutique."),
            _ => format!("Order {id}: {money}, delivery included."),
        },
        "note": "The payment button goes to the customer by itself after your answer: don't repeat the link.",
    }))
    .into_response()
}

fn view(checkout: &Checkout, order: &Placed) -> Value {
    json!({
        "order": order.id, "items": order.lines, "delivery": order.delivery,
        "total": checkout.shop.money_of(order.total_cents), "status": order.state.name(),
    })
}

async fn order_view(
    State(checkout): State<Arc<Checkout>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    match checkout.find(&id) {
        Some(order) => Json(view(&checkout, &order)).into_response(),
        None => refused(StatusCode::NOT_FOUND, "No such order."),
    }
}

/// Moves the order and tells the gateway when it moved.
async fn transition(
    checkout: &Checkout,
    id: &str,
    from: &[PaymentState],
    to: PaymentState,
    kind: &str,
) -> Result<Placed, Response> {
    let Some((order, moved)) = checkout.advance(id, from, to) else {
        return Err(refused(StatusCode::NOT_FOUND, "No such order."));
    };
    if !moved {
        return Err(refused(
            StatusCode::CONFLICT,
            &format!("The order is {}.", order.state.name()),
        ));
    }
    if let Err(why) = checkout.tell(&order, kind).await {
        tracing::warn!(order = %order.id, %why, "the gateway was not told");
    }
    Ok(order)
}

async fn ship(State(checkout): State<Arc<Checkout>>, UrlPath(id): UrlPath<String>) -> Response {
    match transition(
        &checkout,
        &id,
        &[PaymentState::Paid],
        PaymentState::Shipped,
        "order.shipped",
    )
    .await
    {
        Ok(order) => Json(view(&checkout, &order)).into_response(),
        Err(refusal) => refusal,
    }
}

async fn deliver(State(checkout): State<Arc<Checkout>>, UrlPath(id): UrlPath<String>) -> Response {
    match transition(
        &checkout,
        &id,
        &[PaymentState::Shipped],
        PaymentState::Delivered,
        "order.delivered",
    )
    .await
    {
        Ok(order) => Json(view(&checkout, &order)).into_response(),
        Err(refusal) => refusal,
    }
}

/// Text for an HTML page: `<`, `>`, `&` and quotes escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title><style>body{{font:16px/1.45 system-ui,sans-serif;background:#f4f1ec;margin:0;display:grid;place-items:center;min-height:100vh}}main{{background:#fff;border-radius:14px;padding:28px;max-width:420px;width:calc(100% - 32px);box-shadow:0 2px 10px rgba(0,0,0,.08)}}h1{{font-size:20px;margin:0 0 6px}}ul{{padding-left:18px}}.total{{font-size:22px;font-weight:700;margin:14px 0}}form{{display:inline}}button{{font:inherit;border-radius:10px;padding:10px 18px;border:0;cursor:pointer;margin:6px 8px 0 0}}.pay{{background:#2f3e46;color:#fff}}.fail{{background:#eee;color:#333}}.muted{{color:#666;font-size:14px}}</style></head><body><main>{body}</main></body></html>",
        title = escape(title),
    );
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

async fn pay_page(State(checkout): State<Arc<Checkout>>, UrlPath(id): UrlPath<String>) -> Response {
    let Some(order) = checkout.find(&id) else {
        return (
            StatusCode::NOT_FOUND,
            page("No such order", "<h1>No such order</h1>"),
        )
            .into_response();
    };
    let lines: String = order
        .lines
        .iter()
        .map(|l| {
            format!(
                "<li>{} × {} <span class=\"muted\">({})</span></li>",
                l["quantity"],
                escape(l["name"].as_str().unwrap_or_default()),
                escape(l["price"].as_str().unwrap_or_default())
            )
        })
        .collect();
    let total = checkout.shop.money_of(order.total_cents);
    let id = escape(&order.id);
    let actions = match order.state {
        PaymentState::Awaiting | PaymentState::Failed => format!(
            "<form method=\"post\" action=\"/pay/{id}/succeed\"><button class=\"pay\" id=\"pay\">Pay {total}</button></form><form method=\"post\" action=\"/pay/{id}/fail\"><button class=\"fail\" id=\"fail\">Fail the payment</button></form><p class=\"muted\">A stand-in for a payment provider: no card is asked and nothing is charged.</p>",
            total = escape(&total)
        ),
        _ => "<p>This order is paid. You can go back to the chat.</p>".to_string(),
    };
    page(
        &format!("Pay {}", order.id),
        &format!(
            "<h1>Maison Lumière · order {id}</h1><ul>{lines}</ul><p class=\"muted\">Delivery: {}</p><p class=\"total\">{}</p>{actions}",
            escape(&order.delivery),
            escape(&total)
        ),
    )
}

async fn pay_succeed(
    State(checkout): State<Arc<Checkout>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let from = [PaymentState::Awaiting, PaymentState::Failed];
    match transition(
        &checkout,
        &id,
        &from,
        PaymentState::Paid,
        "payment.succeeded",
    )
    .await
    {
        Ok(order) => page(
            "Paid",
            &format!(
                "<h1 id=\"done\">Payment received</h1><p>Order {} is paid. You can go back to the chat: the confirmation is there.</p>",
                escape(&order.id)
            ),
        ),
        Err(_) => page(
            "Paid",
            "<h1 id=\"done\">This order is already paid</h1><p>You can go back to the chat.</p>",
        ),
    }
}

async fn pay_fail(State(checkout): State<Arc<Checkout>>, UrlPath(id): UrlPath<String>) -> Response {
    match transition(
        &checkout,
        &id,
        &[PaymentState::Awaiting],
        PaymentState::Failed,
        "payment.failed",
    )
    .await
    {
        Ok(order) => page(
            "Payment failed",
            &format!(
                "<h1 id=\"done\">The payment did not go through</h1><p>Nothing was charged for order {}. You can try again from this page or from the chat.</p><form method=\"post\" action=\"/pay/{0}/succeed\"><button class=\"pay\">Try again</button></form>",
                escape(&order.id)
            ),
        ),
        Err(refusal) => refusal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn shop() -> Router {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-shop.json");
        let shop = Shop::load(&path).expect("the example shop");
        crate::demo_shop::router_with(
            Arc::new(shop),
            Some("t".into()),
            CheckoutSettings {
                public_url: "http://shop.example".into(),
                gateway: None,
            },
        )
    }

    async fn call(
        router: &Router,
        method: &str,
        uri: &str,
        token: bool,
        body: Value,
    ) -> (StatusCode, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .header("x-concierge-conversation", "c-1");
        if token {
            request = request.header("authorization", "Bearer t");
        }
        let answer = router
            .clone()
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = answer.status();
        let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn a_cart_becomes_an_order_with_a_payment_link_and_the_page_takes_the_payment() {
        let router = shop();
        let cart = json!({ "items": [{ "sku": "BOU-FIGUIER-300", "quantity": 2 }], "delivery": "colissimo" });
        let (status, body) = call(&router, "POST", "/checkout", true, cart).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let order: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(order["order"], "ML-30001");
        assert_eq!(order["total"], "76.00 EUR", "free delivery from 60 €");
        assert_eq!(order["payment_url"], "http://shop.example/pay/ML-30001");
        assert_eq!(order["payment_label"], "Pay 76.00 EUR");
        // The page is the customer's: no token; the order's lines are on it.
        let (status, page) = call(&router, "GET", "/pay/ML-30001", false, Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains("Figuier 300 g") && page.contains("id=\"pay\""),
            "{page}"
        );
        let (status, paid) =
            call(&router, "POST", "/pay/ML-30001/succeed", false, Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        assert!(paid.contains("Payment received"), "{paid}");
        let (_, again) = call(&router, "POST", "/pay/ML-30001/succeed", false, Value::Null).await;
        assert!(again.contains("already paid"), "{again}");
        let (status, shipped) = call(
            &router,
            "POST",
            "/checkout/ML-30001/ship",
            true,
            Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(shipped.contains("\"status\":\"shipped\""), "{shipped}");
        // The merchant's side needs the token.
        let (status, _) = call(
            &router,
            "POST",
            "/checkout/ML-30001/deliver",
            false,
            Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn an_unknown_or_short_item_is_refused_with_a_reason_the_agent_can_tell() {
        let router = shop();
        for (cart, status, words) in [
            (
                json!({ "items": [{ "sku": "BOU-NOPE", "quantity": 1 }] }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "no product BOU-NOPE",
            ),
            (
                json!({ "items": [{ "sku": "BOU-FIGUIER", "quantity": 1 }] }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "size's reference",
            ),
            (
                json!({ "items": [{ "sku": "BOU-TILLEUL-600", "quantity": 1 }] }),
                StatusCode::CONFLICT,
                "only 0 in stock",
            ),
            (
                json!({ "items": [] }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "cart is empty",
            ),
            (
                json!({ "items": [{ "sku": "BOU-FIGUIER-300", "quantity": 1 }], "delivery": "drone" }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "colissimo",
            ),
        ] {
            let (got, body) = call(&router, "POST", "/checkout", true, cart).await;
            assert_eq!(got, status, "{body}");
            assert!(body.contains(words), "{body}");
        }
        let (status, _) = call(&router, "GET", "/pay/ML-39999", false, Value::Null).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
