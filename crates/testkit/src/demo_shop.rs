//! The demo merchant backend served by `concierge demo-shop`: catalogue, orders and returns.
//!
//! It answers the merchant tools the agents call, standing in for a real shop's API so the
//! whole chain (chat app, gateway, agents, merchant tools) can be tried on one machine. The data
//! comes from a file such as
//! `examples/demo-shop.json` (`{"currency": "EUR", "products": [...], "orders": [...]}`);
//! returns created through the API are kept in memory only.
//!
//! # Who is asking
//!
//! The gateway calls this backend on behalf of a customer and says who that is in headers:
//! `X-Concierge-Channel`, `X-Concierge-Contact`, `X-Concierge-Conversation` and, when the chat
//! app has verified it, `X-Concierge-Phone` (E.164). The backend trusts them because the bearer
//! token (when one is configured) proves the caller is the gateway. Orders are only ever shown
//! to the customer whose verified phone number they carry, or to whoever gives the order's
//! e-mail address along with its number.
//!
//! # Endpoints
//!
//! Every answer is JSON; every error is `{"error": "<a sentence an assistant can relay>"}`.
//!
//! - `GET /products?q=&category=`: catalogue search, at most 10 results.
//! - `GET /products/{sku}`: one product (by its sku or a variant's), with stock per variant.
//! - `GET /orders`: the verified customer's orders, newest first.
//! - `GET /orders/{id}?email=`: one order, for its verified customer or its e-mail address.
//! - `POST /returns`: `{"order_id", "reason", "items"?}`, for a delivered order of the verified
//!   customer, within 30 days of delivery.
//! - `POST /checkout`, `GET /checkout/{id}`, `POST /checkout/{id}/ship|deliver`, and the
//!   customer's payment page `/pay/{id}`: see [`crate::demo_checkout`].
//! - `GET /healthz`: `ok`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::civil::Date;
use jiff::fmt::temporal::{Pieces, PiecesOffset};
use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How many products a search returns at most.
const MAX_RESULTS: usize = 10;
/// How long after delivery a return can be started.
const RETURN_WINDOW_DAYS: i64 = 30;
/// Where the return labels are published.
const LABEL_BASE_URL: &str = "https://maison-lumiere.example/returns";
/// The answer for an order that does not exist or belongs to someone else: the same either way.
const NO_SUCH_ORDER: &str = "No order with that number for this customer.";
const ORDERS_NEED_PHONE: &str = "I can only list orders for a customer whose phone number is verified by the chat app; ask for the order number and the e-mail address used for it.";
const RETURNS_NEED_PHONE: &str = "I can only start a return for a customer whose phone number is verified by the chat app; the customer can also write to the shop by e-mail with the order number.";
const RETURN_INSTRUCTIONS: &str = "Pack the unused items in their original packaging, print the return label from the link and stick it on the parcel, then drop it at a post office or a Colissimo pickup point within 14 days. Return postage is at the customer's expense. The refund is made within 5 working days of the parcel reaching the workshop, on the original payment method. Candles that have been lit cannot be returned.";

/// Why the demo shop's data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DemoShopError {
    /// The file could not be read.
    #[error("cannot read the demo shop file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON of the expected shape.
    #[error("{origin} is not a valid demo shop file: {source}")]
    Parse {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    /// The file is well-formed but its content is inconsistent (duplicate skus, bad dates…).
    #[error("{origin}: {problem}")]
    Invalid { origin: String, problem: String },
}

/// The file's content.
#[derive(Debug, Deserialize)]
struct ShopFile {
    currency: String,
    products: Vec<Product>,
    #[serde(default)]
    orders: Vec<Order>,
}

#[derive(Debug, Deserialize)]
struct Product {
    sku: String,
    name: String,
    category: String,
    #[serde(default)]
    description: String,
    /// The reference price shown on the product page; the variants carry their own.
    #[serde(default)]
    price_cents: Option<u64>,
    variants: Vec<Variant>,
}

#[derive(Debug, Deserialize)]
struct Variant {
    sku: String,
    label: String,
    price_cents: u64,
    stock: u32,
    /// `YYYY-MM-DD`, for a variant out of stock.
    #[serde(default)]
    restock_date: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Order {
    id: String,
    #[serde(default)]
    phone: Option<String>,
    email: String,
    name: String,
    placed_at: At,
    status: OrderStatus,
    #[serde(default)]
    carrier: Option<String>,
    #[serde(default)]
    tracking: Option<String>,
    #[serde(default)]
    tracking_url: Option<String>,
    #[serde(default)]
    delivered_at: Option<At>,
    items: Vec<OrderItem>,
    #[serde(default)]
    shipping_cents: Option<u64>,
    total_cents: u64,
    #[serde(default)]
    shipping_address_city: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum OrderStatus {
    Processing,
    Shipped,
    Delivered,
    Cancelled,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
struct OrderItem {
    sku: String,
    name: String,
    qty: u32,
    price_cents: u64,
}

/// A return created through the API.
#[derive(Debug, Clone)]
struct ReturnRecord {
    return_id: String,
    order_id: String,
    items: Vec<OrderItem>,
    reason: String,
    created_at: At,
}

impl ReturnRecord {
    fn label_url(&self) -> String {
        format!("{LABEL_BASE_URL}/{}/label.pdf", self.return_id)
    }
}

#[derive(Debug, Default)]
struct Returns {
    created: Vec<ReturnRecord>,
    next_number: u32,
}

/// The demo shop: its catalogue and orders (read-only) and the returns created since it started.
#[derive(Debug)]
pub struct Shop {
    currency: String,
    products: Vec<Product>,
    orders: Vec<Order>,
    returns: Mutex<Returns>,
}

impl Shop {
    /// Reads the shop's data from a JSON file.
    pub fn load(path: &Path) -> Result<Shop, DemoShopError> {
        let text = std::fs::read_to_string(path).map_err(|source| DemoShopError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Shop::parse(&text, &path.display().to_string())
    }

    /// Reads the shop's data from JSON text.
    pub fn from_json(text: &str) -> Result<Shop, DemoShopError> {
        Shop::parse(text, "the demo shop JSON")
    }

    fn parse(text: &str, origin: &str) -> Result<Shop, DemoShopError> {
        let file: ShopFile = serde_json::from_str(text).map_err(|source| DemoShopError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        validate(&file).map_err(|problem| DemoShopError::Invalid {
            origin: origin.to_string(),
            problem,
        })?;
        Ok(Shop {
            currency: file.currency,
            products: file.products,
            orders: file.orders,
            returns: Mutex::new(Returns {
                created: Vec::new(),
                next_number: 20001,
            }),
        })
    }

    fn returns(&self) -> std::sync::MutexGuard<'_, Returns> {
        // The data under the lock stays consistent even if a holder panicked.
        self.returns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn money(&self, cents: u64) -> String {
        format!("{}.{:02} {}", cents / 100, cents % 100, self.currency)
    }

    /// An amount as the shop writes it (`38.00 EUR`).
    pub(crate) fn money_of(&self, cents: u64) -> String {
        self.money(cents)
    }

    /// What the checkout sells under `sku`: a size by its reference, or a product that
    /// comes in one size only: its name, the size's label, price and stock.
    pub(crate) fn variant_for_checkout(&self, sku: &str) -> Option<(String, String, u64, u32)> {
        let (product, variant) = self.find_product(sku)?;
        let variant = match (variant, product.variants.as_slice()) {
            (Some(variant), _) => variant,
            (None, [only]) => only,
            _ => return None,
        };
        Some((
            product.name.clone(),
            variant.label.clone(),
            variant.price_cents,
            variant.stock,
        ))
    }

    fn find_product(&self, sku: &str) -> Option<(&Product, Option<&Variant>)> {
        let sku = sku.trim();
        self.products.iter().find_map(|product| {
            if product.sku.eq_ignore_ascii_case(sku) {
                return Some((product, None));
            }
            product
                .variants
                .iter()
                .find(|variant| variant.sku.eq_ignore_ascii_case(sku))
                .map(|variant| (product, Some(variant)))
        })
    }

    /// The products matching every word of `q` (in name, description, category or sku) and, if
    /// given, the category; all of them in catalogue order.
    fn search(&self, q: Option<&str>, category: Option<&str>) -> Vec<&Product> {
        let terms: Vec<String> = q
            .map(|q| words(q).split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let category = category.map(category_key).filter(|c| !c.is_empty());
        self.products
            .iter()
            .filter(|product| match &category {
                Some(wanted) => category_key(&product.category) == *wanted,
                None => true,
            })
            .filter(|product| {
                let mut haystack = format!(
                    "{} {} {} {}",
                    product.name, product.description, product.category, product.sku
                );
                for variant in &product.variants {
                    haystack.push(' ');
                    haystack.push_str(&variant.sku);
                    haystack.push(' ');
                    haystack.push_str(&variant.label);
                }
                let haystack = words(&haystack);
                terms.iter().all(|term| haystack.contains(term.as_str()))
            })
            .collect()
    }

    fn categories(&self) -> Vec<&str> {
        let mut seen = Vec::new();
        for product in &self.products {
            if !seen.contains(&product.category.as_str()) {
                seen.push(product.category.as_str());
            }
        }
        seen
    }

    fn product_summary(&self, product: &Product) -> Value {
        let low = product.variants.iter().map(|v| v.price_cents).min();
        let high = product.variants.iter().map(|v| v.price_cents).max();
        let price = match (low, high) {
            (Some(low), Some(high)) if low == high => self.money(low),
            (Some(low), Some(high)) => format!("{} to {}", self.money(low), self.money(high)),
            _ => String::new(),
        };
        json!({
            "sku": product.sku,
            "name": product.name,
            "category": product.category,
            "description": product.description,
            "price_from_cents": low,
            "price_to_cents": high,
            "price": price,
            "reference_price_cents": product.price_cents.or(low),
            "available": product.variants.iter().any(|v| v.stock > 0),
        })
    }

    fn product_detail(&self, product: &Product, matched: Option<&Variant>) -> Value {
        let mut detail = self.product_summary(product);
        let variants: Vec<Value> = product
            .variants
            .iter()
            .map(|variant| {
                let restock_date = (variant.stock == 0)
                    .then_some(variant.restock_date.as_deref())
                    .flatten();
                json!({
                    "sku": variant.sku,
                    "label": variant.label,
                    "price_cents": variant.price_cents,
                    "price": self.money(variant.price_cents),
                    "stock": variant.stock,
                    "in_stock": variant.stock > 0,
                    "restock_date": restock_date,
                })
            })
            .collect();
        if let Value::Object(map) = &mut detail {
            map.insert("currency".into(), json!(self.currency));
            map.insert("variants".into(), Value::Array(variants));
            if let Some(variant) = matched {
                map.insert("matched_variant".into(), json!(variant.sku));
            }
        }
        detail
    }

    fn find_order(&self, id: &str) -> Option<&Order> {
        let wanted = order_key(id);
        if wanted.is_empty() {
            return None;
        }
        self.orders.iter().find(|order| {
            let key = order_key(&order.id);
            key == wanted || (wanted.bytes().all(|b| b.is_ascii_digit()) && digits(&key) == wanted)
        })
    }

    /// The order `id` if `phone` (verified) or `email` (given by the customer) is the order's.
    fn order_for(&self, id: &str, phone: Option<&str>, email: Option<&str>) -> Option<&Order> {
        let order = self.find_order(id)?;
        let by_phone = matches!((phone, order.phone.as_deref()), (Some(caller), Some(owner)) if normalize_phone(owner).as_deref() == Some(caller));
        let by_email = email.map(str::trim).is_some_and(|email| {
            !email.is_empty() && email.eq_ignore_ascii_case(order.email.trim())
        });
        (by_phone || by_email).then_some(order)
    }

    fn orders_of(&self, phone: &str) -> Vec<&Order> {
        let mut orders: Vec<&Order> = self
            .orders
            .iter()
            .filter(|order| {
                order.phone.as_deref().and_then(normalize_phone).as_deref() == Some(phone)
            })
            .collect();
        orders.sort_by_key(|order| std::cmp::Reverse(order.placed_at.at));
        orders
    }

    fn order_json(&self, order: &Order) -> Value {
        let items: Vec<Value> = order
            .items
            .iter()
            .map(|item| {
                json!({
                    "sku": item.sku,
                    "name": item.name,
                    "qty": item.qty,
                    "price_cents": item.price_cents,
                    "price": self.money(item.price_cents),
                })
            })
            .collect();
        let returns: Vec<Value> = self
            .returns()
            .created
            .iter()
            .filter(|r| r.order_id == order.id)
            .map(|r| {
                json!({
                    "return_id": r.return_id,
                    "items": r.items.iter().map(|i| i.sku.as_str()).collect::<Vec<_>>(),
                    "created_at": r.created_at.to_string(),
                    "label_url": r.label_url(),
                })
            })
            .collect();
        let return_deadline = match (order.status, order.delivered_at) {
            (OrderStatus::Delivered, Some(at)) => Some(date_iso(
                at.date()
                    .saturating_add(jiff::Span::new().days(RETURN_WINDOW_DAYS)),
            )),
            _ => None,
        };
        json!({
            "id": order.id,
            "name": order.name,
            "placed_at": order.placed_at.to_string(),
            "status": order.status,
            "carrier": order.carrier,
            "tracking": order.tracking,
            "tracking_url": order.tracking_url,
            "delivered_at": order.delivered_at.map(|at| at.to_string()),
            "items": items,
            "shipping_cents": order.shipping_cents,
            "total_cents": order.total_cents,
            "total": self.money(order.total_cents),
            "currency": self.currency,
            "shipping_address_city": order.shipping_address_city,
            "return_deadline": return_deadline,
            "returns": returns,
        })
    }

    /// Starts a return of `request.items` (all the order's items when none are named) from an
    /// order of the customer whose verified phone is `phone`, if it was delivered at most 30
    /// days before `now`.
    fn create_return(
        &self,
        phone: Option<&str>,
        request: &ReturnRequest,
        now: At,
    ) -> Result<ReturnRecord, ApiError> {
        let Some(phone) = phone else {
            return Err(ApiError::new(StatusCode::FORBIDDEN, RETURNS_NEED_PHONE));
        };
        let order = self
            .order_for(&request.order_id, Some(phone), None)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, NO_SUCH_ORDER))?;
        let reason = request.reason.trim();
        if reason.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "A return needs a reason: please say briefly why the items are being sent back.",
            ));
        }
        let delivered_at = match (order.status, order.delivered_at) {
            (OrderStatus::Delivered, Some(at)) => at,
            (OrderStatus::Cancelled, _) => {
                return Err(ApiError::conflict(format!(
                    "Order {} was cancelled, so there is nothing to return.",
                    order.id
                )));
            }
            (OrderStatus::Processing, _) => {
                return Err(ApiError::conflict(format!(
                    "Order {} is still being prepared and has not been shipped yet, so it cannot be returned; a member of the team can help if it is no longer wanted.",
                    order.id
                )));
            }
            (OrderStatus::Shipped | OrderStatus::Delivered, _) => {
                return Err(ApiError::conflict(format!(
                    "Order {} has not been delivered yet; a return can be started once it has arrived.",
                    order.id
                )));
            }
        };
        if now.at.duration_since(delivered_at.at)
            > SignedDuration::from_hours(24 * RETURN_WINDOW_DAYS)
        {
            return Err(ApiError::conflict(format!(
                "Order {} was delivered on {}, more than {RETURN_WINDOW_DAYS} days ago, so it is past the return period.",
                order.id,
                date_words(delivered_at.date())
            )));
        }

        let mut returns = self.returns();
        let already: HashSet<String> = returns
            .created
            .iter()
            .filter(|r| r.order_id == order.id)
            .flat_map(|r| r.items.iter().map(|i| i.sku.to_ascii_uppercase()))
            .collect();
        let items: Vec<OrderItem> = match request.items.as_deref() {
            Some(skus) if !skus.is_empty() => {
                let mut picked: Vec<OrderItem> = Vec::new();
                for sku in skus {
                    let Some(item) = order
                        .items
                        .iter()
                        .find(|item| item.sku.eq_ignore_ascii_case(sku.trim()))
                    else {
                        let contents: Vec<&str> =
                            order.items.iter().map(|i| i.sku.as_str()).collect();
                        return Err(ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            format!(
                                "{} is not part of order {}, which contains: {}.",
                                sku.trim(),
                                order.id,
                                contents.join(", ")
                            ),
                        ));
                    };
                    if already.contains(&item.sku.to_ascii_uppercase()) {
                        return Err(ApiError::conflict(format!(
                            "A return is already open for {} from order {}.",
                            item.name, order.id
                        )));
                    }
                    if !picked.iter().any(|p| p.sku == item.sku) {
                        picked.push(item.clone());
                    }
                }
                picked
            }
            _ => {
                let rest: Vec<OrderItem> = order
                    .items
                    .iter()
                    .filter(|item| !already.contains(&item.sku.to_ascii_uppercase()))
                    .cloned()
                    .collect();
                if rest.is_empty() {
                    return Err(ApiError::conflict(format!(
                        "A return is already open for every item of order {}.",
                        order.id
                    )));
                }
                rest
            }
        };
        let record = ReturnRecord {
            return_id: format!("RMA-{}", returns.next_number),
            order_id: order.id.clone(),
            items,
            reason: reason.to_string(),
            created_at: now,
        };
        returns.next_number += 1;
        returns.created.push(record.clone());
        Ok(record)
    }
}

/// Checks what serde cannot: unique skus and order ids, dates, phone numbers, delivered orders.
fn validate(file: &ShopFile) -> Result<(), String> {
    if file.currency.trim().is_empty() {
        return Err("`currency` is empty".into());
    }
    let mut skus = HashSet::new();
    for product in &file.products {
        if product.sku.trim().is_empty() || product.name.trim().is_empty() {
            return Err(format!(
                "a product has an empty sku or name (sku `{}`)",
                product.sku
            ));
        }
        if !skus.insert(product.sku.to_ascii_uppercase()) {
            return Err(format!("the sku `{}` is used twice", product.sku));
        }
        if product.variants.is_empty() {
            return Err(format!("product `{}` has no variants", product.sku));
        }
        for variant in &product.variants {
            if !skus.insert(variant.sku.to_ascii_uppercase()) {
                return Err(format!("the sku `{}` is used twice", variant.sku));
            }
            if let Some(date) = &variant.restock_date
                && !is_iso_date(date)
            {
                return Err(format!(
                    "variant `{}`: restock_date `{date}` is not a YYYY-MM-DD date",
                    variant.sku
                ));
            }
        }
    }
    let mut ids = HashSet::new();
    for order in &file.orders {
        if order_key(&order.id).is_empty() {
            return Err("an order has an empty id".into());
        }
        if !ids.insert(order_key(&order.id)) {
            return Err(format!("the order id `{}` is used twice", order.id));
        }
        if let Some(phone) = &order.phone
            && normalize_phone(phone).is_none()
        {
            return Err(format!(
                "order `{}`: phone `{phone}` is not an E.164 number such as +33612345678",
                order.id
            ));
        }
        if !order.email.contains('@') {
            return Err(format!(
                "order `{}`: email `{}` is not an e-mail address",
                order.id, order.email
            ));
        }
        if order.status == OrderStatus::Delivered && order.delivered_at.is_none() {
            return Err(format!(
                "order `{}` is delivered but has no delivered_at",
                order.id
            ));
        }
        if order.items.is_empty() {
            return Err(format!("order `{}` has no items", order.id));
        }
    }
    Ok(())
}

/// An error answer: `{"error": message}` with its status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn conflict(message: String) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// What the gateway says about the customer it is calling for.
#[derive(Debug, Default)]
struct Caller {
    /// The verified phone number, normalized to `+` and digits.
    phone: Option<String>,
    channel: Option<String>,
    conversation: Option<String>,
}

impl Caller {
    fn from_headers(headers: &HeaderMap) -> Caller {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_string)
        };
        Caller {
            phone: text("x-concierge-phone").and_then(|p| normalize_phone(&p)),
            channel: text("x-concierge-channel"),
            conversation: text("x-concierge-conversation"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OrderQuery {
    #[serde(default)]
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReturnRequest {
    order_id: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    items: Option<Vec<String>>,
}

/// The demo shop's HTTP API, its checkout's payment page at `http://127.0.0.1:8081` telling
/// nobody (see [`router_with`]).
pub fn router(shop: Arc<Shop>, token: Option<String>) -> Router {
    let checkout = crate::demo_checkout::CheckoutSettings {
        public_url: "http://127.0.0.1:8081".to_string(),
        gateway: None,
    };
    router_with(shop, token, checkout)
}

/// The demo shop's HTTP API with its checkout. `token`: when Some, every request but the
/// customer's payment page must carry `Authorization: Bearer <token>` (401 JSON error
/// otherwise).
pub fn router_with(
    shop: Arc<Shop>,
    token: Option<String>,
    checkout: crate::demo_checkout::CheckoutSettings,
) -> Router {
    let token: Arc<Option<String>> = Arc::new(token.filter(|t| !t.is_empty()));
    let (checkout, payment_page) = crate::demo_checkout::routes(shop.clone(), checkout);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/products", get(search_products))
        .route("/products/{sku}", get(get_product))
        .route("/orders", get(list_orders))
        .route("/orders/{id}", get(get_order))
        .route("/returns", post(start_return))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "The shop has no such service; check the tool's address.",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "This service does not accept that method.",
            )
        })
        .with_state(shop)
        .merge(checkout)
        .layer(middleware::from_fn_with_state(token, require_token))
        .merge(payment_page)
}

async fn require_token(
    State(token): State<Arc<Option<String>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = token.as_deref() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(presented) if same_secret(presented.as_bytes(), expected.as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "The shop did not recognise the caller: a valid bearer token is required.",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Compares two secrets in a time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn search_products(
    State(shop): State<Arc<Shop>>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("The search could not be read: {}", rejection.body_text()),
        )
    })?;
    let found = shop.search(query.q.as_deref(), query.category.as_deref());
    let products: Vec<Value> = found
        .iter()
        .take(MAX_RESULTS)
        .map(|product| shop.product_summary(product))
        .collect();
    let mut answer = json!({
        "products": products,
        "total_matches": found.len(),
        "currency": shop.currency,
    });
    if found.is_empty()
        && let Value::Object(map) = &mut answer
    {
        map.insert(
            "note".into(),
            json!("Nothing in the catalogue matches that search; try another word or one of the categories."),
        );
        map.insert("categories".into(), json!(shop.categories()));
    }
    Ok(Json(answer))
}

async fn get_product(
    State(shop): State<Arc<Shop>>,
    UrlPath(sku): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (product, variant) = shop.find_product(&sku).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "There is no product with the reference {} in the catalogue.",
                sku.trim()
            ),
        )
    })?;
    Ok(Json(shop.product_detail(product, variant)))
}

async fn list_orders(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = Caller::from_headers(&headers);
    let Some(phone) = caller.phone.as_deref() else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, ORDERS_NEED_PHONE));
    };
    let orders = shop.orders_of(phone);
    let mut answer = json!({
        "orders": orders.iter().map(|order| shop.order_json(order)).collect::<Vec<_>>(),
    });
    if orders.is_empty()
        && let Value::Object(map) = &mut answer
    {
        map.insert(
            "note".into(),
            json!("No orders are linked to this phone number; the customer may have ordered with another number, so ask for the order number and the e-mail address used for it."),
        );
    }
    Ok(Json(answer))
}

async fn get_order(
    State(shop): State<Arc<Shop>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    query: Result<Query<OrderQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = Caller::from_headers(&headers);
    let email = query.ok().and_then(|Query(query)| query.email);
    let order = shop
        .order_for(&id, caller.phone.as_deref(), email.as_deref())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, NO_SUCH_ORDER))?;
    Ok(Json(shop.order_json(order)))
}

async fn start_return(
    State(shop): State<Arc<Shop>>,
    headers: HeaderMap,
    body: Result<Json<ReturnRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(request) = body.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "The return request could not be read (it needs an order_id and a reason): {}",
                rejection.body_text()
            ),
        )
    })?;
    let caller = Caller::from_headers(&headers);
    let record = shop.create_return(caller.phone.as_deref(), &request, At::now())?;
    tracing::info!(
        return_id = %record.return_id,
        order_id = %record.order_id,
        reason = %record.reason,
        channel = caller.channel.as_deref().unwrap_or("-"),
        conversation = caller.conversation.as_deref().unwrap_or("-"),
        "demo shop: return created"
    );
    let items: Vec<Value> = record
        .items
        .iter()
        .map(|item| json!({ "sku": item.sku, "name": item.name, "qty": item.qty }))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "return_id": record.return_id,
            "order_id": record.order_id,
            "items": items,
            "label_url": record.label_url(),
            "instructions": RETURN_INSTRUCTIONS,
            "created_at": record.created_at.to_string(),
        })),
    ))
}

/// Lowercases and drops the accents of Latin letters, so `Lumière` matches `lumiere`.
fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' => out.push('a'),
            'æ' => out.push_str("ae"),
            'ç' | 'ć' | 'č' => out.push('c'),
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => out.push('e'),
            'ì' | 'í' | 'î' | 'ï' | 'ī' => out.push('i'),
            'ñ' | 'ń' | 'ň' => out.push('n'),
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' => out.push('o'),
            'œ' => out.push_str("oe"),
            'ß' => out.push_str("ss"),
            'ś' | 'š' => out.push('s'),
            'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' => out.push('u'),
            'ý' | 'ÿ' => out.push('y'),
            'ź' | 'ż' | 'ž' => out.push('z'),
            '\u{2018}' | '\u{2019}' | '`' => out.push('\''),
            // Combining accents, when the text arrives decomposed.
            '\u{0300}'..='\u{036f}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Folded, with hyphens and underscores as spaces: `gift-card` finds `Gift card`.
fn words(text: &str) -> String {
    fold(text).replace(['-', '_'], " ")
}

/// `Gift cards`, `gift-cards` and `gift card` name the same category.
fn category_key(category: &str) -> String {
    let key: String = fold(category)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    match key.strip_suffix('s') {
        Some(singular) => singular.to_string(),
        None => key,
    }
}

/// `+33 6 12-34-56-78` → `+33612345678`; None unless it is `+` and 8 to 15 digits.
fn normalize_phone(phone: &str) -> Option<String> {
    let phone = phone.trim();
    let rest = phone.strip_prefix('+')?;
    let digits: String = rest
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    (digits.bytes().all(|b| b.is_ascii_digit()) && (8..=15).contains(&digits.len()))
        .then(|| format!("+{digits}"))
}

/// `#ml-10421 ` → `ML10421`: what identifies an order, whatever way it is typed.
fn order_key(id: &str) -> String {
    id.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// An RFC 3339 instant and the offset it was written with (its date is the one there).
#[derive(Debug, Clone, Copy)]
struct At {
    at: Timestamp,
    offset: Offset,
}

impl At {
    fn now() -> Self {
        Self {
            at: Timestamp::now(),
            offset: Offset::UTC,
        }
    }

    /// `2026-11-18T14:02:00Z`, `2026-11-18T15:02:00+01:00`: an offset is required.
    fn parse(text: &str) -> Result<Self, String> {
        let not = |e: jiff::Error| format!("`{text}` is not an RFC 3339 date and time: {e}");
        let at: Timestamp = text.parse().map_err(not)?;
        let offset = match Pieces::parse(text).map_err(not)?.offset() {
            Some(PiecesOffset::Numeric(numeric)) => numeric.offset(),
            _ => Offset::UTC,
        };
        Ok(Self { at, offset })
    }

    fn date(self) -> Date {
        self.offset.to_datetime(self.at).date()
    }
}

impl std::fmt::Display for At {
    /// RFC 3339 in the offset it came with; `Z` for UTC.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.offset == Offset::UTC {
            write!(f, "{}", self.at)
        } else {
            write!(f, "{}", self.at.display_with_offset(self.offset))
        }
    }
}

impl<'de> Deserialize<'de> for At {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        At::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `YYYY-MM-DD`, and a day of the calendar.
fn is_iso_date(text: &str) -> bool {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped && text.parse::<Date>().is_ok()
}

fn date_iso(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// `10 November 2026`.
fn date_words(date: Date) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = usize::try_from(date.month() - 1)
        .ok()
        .and_then(|m| MONTHS.get(m))
        .copied()
        .unwrap_or("?");
    format!("{} {month} {}", date.day(), date.year())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// A small shop whose delivered orders are dated relative to `now`.
    impl At {
        fn shifted(self, by: SignedDuration) -> Self {
            Self {
                at: self.at.saturating_add(by).unwrap_or(self.at),
                ..self
            }
        }
    }

    fn days(n: i64) -> SignedDuration {
        SignedDuration::from_hours(24 * n)
    }

    fn sample_json(now: At) -> String {
        let recent = now.shifted(-days(5));
        let old = now.shifted(-days(45));
        format!(
            r#"{{
  "currency": "EUR",
  "products": [
    {{"sku": "BOU-FIGUIER", "name": "Figuier", "category": "candles",
      "description": "Green fig leaves and cedarwood.", "price_cents": 3800,
      "variants": [
        {{"sku": "BOU-FIGUIER-180", "label": "180 g", "price_cents": 2800, "stock": 12}},
        {{"sku": "BOU-FIGUIER-300", "label": "300 g", "price_cents": 3800, "stock": 0, "restock_date": "2026-12-10"}}
      ]}},
    {{"sku": "BOU-FOURVIERE", "name": "Soir à Fourvière", "category": "candles",
      "description": "Incense, cedar and amber.", "price_cents": 3800,
      "variants": [
        {{"sku": "BOU-FOURVIERE-300", "label": "300 g", "price_cents": 3800, "stock": 0, "restock_date": "2026-12-10"}}
      ]}},
    {{"sku": "DIF-FIGUIER", "name": "Diffuseur Figuier", "category": "Reed diffusers",
      "description": "Reed diffuser, smoked glass.",
      "variants": [{{"sku": "DIF-FIGUIER-100", "label": "100 ml", "price_cents": 4200, "stock": 3}}]}}
  ],
  "orders": [
    {{"id": "ML-10421", "phone": "+33612345678", "email": "claire.martin@example.fr",
      "name": "Claire Martin", "placed_at": "2026-11-18T14:02:00Z", "status": "shipped",
      "carrier": "Colissimo", "tracking": "6A12345678901",
      "tracking_url": "https://www.laposte.fr/outils/suivre-vos-envois?code=6A12345678901",
      "delivered_at": null,
      "items": [{{"sku": "BOU-FIGUIER-300", "name": "Figuier 300 g", "qty": 1, "price_cents": 3800}}],
      "total_cents": 4390, "shipping_address_city": "Lyon"}},
    {{"id": "ML-10388", "phone": "+33612345678", "email": "claire.martin@example.fr",
      "name": "Claire Martin", "placed_at": "2026-11-06T09:41:00Z", "status": "delivered",
      "carrier": "Colissimo", "tracking": "6A12345670288", "delivered_at": "{recent}",
      "items": [
        {{"sku": "BOU-FIGUIER-180", "name": "Figuier 180 g", "qty": 2, "price_cents": 2800}},
        {{"sku": "DIF-FIGUIER-100", "name": "Diffuseur Figuier 100 ml", "qty": 1, "price_cents": 4200}}
      ],
      "total_cents": 9800, "shipping_address_city": "Lyon"}},
    {{"id": "ML-10433", "phone": "+447700900123", "email": "james.whitfield@example.co.uk",
      "name": "James Whitfield", "placed_at": "2026-11-23T08:15:00Z", "status": "processing",
      "items": [{{"sku": "BOU-FOURVIERE-300", "name": "Soir à Fourvière 300 g", "qty": 1, "price_cents": 3800}}],
      "total_cents": 5700, "shipping_address_city": "London"}},
    {{"id": "ML-10297", "phone": "+447700900123", "email": "james.whitfield@example.co.uk",
      "name": "James Whitfield", "placed_at": "2026-09-01T10:00:00Z", "status": "delivered",
      "delivered_at": "{old}",
      "items": [{{"sku": "BOU-FIGUIER-180", "name": "Figuier 180 g", "qty": 1, "price_cents": 2800}}],
      "total_cents": 4700}}
  ]
}}"#
        )
    }

    fn shop() -> Arc<Shop> {
        match Shop::from_json(&sample_json(At::now())) {
            Ok(shop) => Arc::new(shop),
            Err(e) => panic!("the sample shop does not load: {e}"),
        }
    }

    async fn call(
        app: Router,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn get_json(uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        call(router(shop(), None), "GET", uri, headers, None).await
    }

    const CLAIRE: (&str, &str) = ("X-Concierge-Phone", "+33612345678");
    const JAMES: (&str, &str) = ("X-Concierge-Phone", "+447700900123");

    #[tokio::test]
    async fn health_answers_ok() {
        let (status, body) = get_json("/healthz", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!("ok"));
    }

    #[tokio::test]
    async fn search_ignores_case_and_accents() {
        let (status, body) = get_json("/products?q=FOURVIERE", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["products"][0]["sku"], "BOU-FOURVIERE");
        assert_eq!(body["products"][0]["available"], false);

        let (_, body) = get_json("/products?q=soir%20%C3%A0", &[]).await;
        assert_eq!(body["total_matches"], 1);

        let (_, body) = get_json("/products?q=figuier", &[]).await;
        assert_eq!(body["total_matches"], 2);
        assert_eq!(body["products"][0]["price"], "28.00 EUR to 38.00 EUR");
        assert_eq!(body["products"][0]["available"], true);

        let (_, body) = get_json("/products?q=fig&category=reed%20Diffusers", &[]).await;
        assert_eq!(body["total_matches"], 1);
        assert_eq!(body["products"][0]["sku"], "DIF-FIGUIER");

        let (_, body) = get_json("/products?category=candle", &[]).await;
        assert_eq!(body["total_matches"], 2);
        let (_, body) = get_json("/products?category=reed-diffuser", &[]).await;
        assert_eq!(body["products"][0]["sku"], "DIF-FIGUIER");
        let (_, body) = get_json("/products?q=figuier-300", &[]).await;
        assert_eq!(body["total_matches"], 1);

        let (status, body) = get_json("/products?q=vanilla", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["products"], json!([]));
        assert_eq!(body["categories"], json!(["candles", "Reed diffusers"]));
    }

    #[tokio::test]
    async fn search_returns_at_most_ten() {
        let products: Vec<Value> = (0..15)
            .map(|i| {
                json!({"sku": format!("P{i}"), "name": format!("Candle {i}"), "category": "candles",
                       "variants": [{"sku": format!("P{i}-1"), "label": "180 g", "price_cents": 100, "stock": 1}]})
            })
            .collect();
        let text = json!({"currency": "EUR", "products": products}).to_string();
        let shop = Arc::new(Shop::from_json(&text).unwrap());
        let (_, body) = call(router(shop, None), "GET", "/products?q=candle", &[], None).await;
        assert_eq!(body["products"].as_array().map(Vec::len), Some(10));
        assert_eq!(body["total_matches"], 15);
    }

    #[tokio::test]
    async fn product_shows_stock_and_restock_date() {
        let (status, body) = get_json("/products/BOU-FIGUIER", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["variants"][0]["stock"], 12);
        assert_eq!(body["variants"][0]["restock_date"], Value::Null);
        assert_eq!(body["variants"][1]["stock"], 0);
        assert_eq!(body["variants"][1]["restock_date"], "2026-12-10");

        let (status, body) = get_json("/products/bou-figuier-300", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["sku"], "BOU-FIGUIER");
        assert_eq!(body["matched_variant"], "BOU-FIGUIER-300");

        let (status, body) = get_json("/products/NOPE", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].as_str().is_some_and(|e| e.contains("NOPE")));
    }

    #[tokio::test]
    async fn orders_are_listed_for_the_verified_phone_newest_first() {
        let (status, body) = get_json("/orders", &[CLAIRE]).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<&str> = body["orders"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["id"].as_str())
            .collect();
        assert_eq!(ids, ["ML-10421", "ML-10388"]);
        assert_eq!(body["orders"][0]["status"], "shipped");
        assert_eq!(body["orders"][0]["tracking"], "6A12345678901");

        let (_, body) = get_json("/orders", &[("X-Concierge-Phone", "+33 6 12 34 56 78")]).await;
        assert_eq!(body["orders"].as_array().map(Vec::len), Some(2));

        let (status, body) = get_json("/orders", &[("X-Concierge-Phone", "+33700000000")]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["orders"], json!([]));
    }

    #[tokio::test]
    async fn orders_without_a_verified_phone_are_refused() {
        let (status, body) = get_json("/orders", &[("X-Concierge-Channel", "webchat")]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body, json!({ "error": ORDERS_NEED_PHONE }));
    }

    #[tokio::test]
    async fn an_order_is_found_by_phone_or_by_email() {
        let (status, body) = get_json("/orders/ML-10433", &[JAMES]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "processing");

        let (status, body) =
            get_json("/orders/ML-10421?email=Claire.Martin%40Example.fr", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["id"], "ML-10421");
        assert_eq!(body["carrier"], "Colissimo");

        let (status, body) = get_json("/orders/10421", &[CLAIRE]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["id"], "ML-10421");
    }

    #[tokio::test]
    async fn someone_elses_order_looks_like_no_order() {
        let expected = json!({ "error": NO_SUCH_ORDER });
        let cases: [(&str, &[(&str, &str)]); 5] = [
            ("/orders/ML-10421", &[JAMES]),
            (
                "/orders/ML-10421?email=james.whitfield%40example.co.uk",
                &[JAMES],
            ),
            ("/orders/ML-10421", &[]),
            ("/orders/ML-99999", &[CLAIRE]),
            ("/orders/ML-99999?email=claire.martin%40example.fr", &[]),
        ];
        for (uri, headers) in cases {
            let (status, body) = get_json(uri, headers).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(body, expected, "{uri}");
        }
    }

    #[tokio::test]
    async fn the_token_is_required_when_configured() {
        let app = || router(shop(), Some("s3cret".into()));
        for headers in [
            &[][..],
            &[("Authorization", "Bearer wrong")][..],
            &[("Authorization", "s3cret")][..],
        ] {
            let (status, body) = call(app(), "GET", "/products", headers, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(body["error"].is_string());
        }
        let (status, _) = call(app(), "GET", "/orders/nothing", &[], None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let (status, body) = call(
            app(),
            "GET",
            "/orders",
            &[("Authorization", "Bearer s3cret"), CLAIRE],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["orders"].as_array().map(Vec::len), Some(2));
    }

    #[tokio::test]
    async fn a_return_is_created_for_a_recent_delivery() {
        let shop = shop();
        let (status, body) = call(
            router(shop.clone(), None),
            "POST",
            "/returns",
            &[CLAIRE],
            Some(json!({"order_id": "ML-10388", "reason": "Scent too strong", "items": ["bou-figuier-180"]})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["return_id"].as_str().unwrap().to_string();
        assert!(id.starts_with("RMA-"));
        assert_eq!(body["order_id"], "ML-10388");
        assert_eq!(body["items"][0]["sku"], "BOU-FIGUIER-180");
        assert_eq!(body["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            body["label_url"],
            format!("https://maison-lumiere.example/returns/{id}/label.pdf")
        );
        assert!(body["instructions"].as_str().is_some_and(|s| !s.is_empty()));

        // The order now shows it, and the same item cannot be returned twice.
        let (_, order) = call(
            router(shop.clone(), None),
            "GET",
            "/orders/ML-10388",
            &[CLAIRE],
            None,
        )
        .await;
        assert_eq!(order["returns"][0]["return_id"], id.as_str());
        let (status, _) = call(
            router(shop.clone(), None),
            "POST",
            "/returns",
            &[CLAIRE],
            Some(json!({"order_id": "ML-10388", "reason": "again", "items": ["BOU-FIGUIER-180"]})),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);

        // Without items, the rest of the order is returned.
        let (status, body) = call(
            router(shop, None),
            "POST",
            "/returns",
            &[CLAIRE],
            Some(json!({"order_id": "ML-10388", "reason": "Changed my mind"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            body["items"],
            json!([{"sku": "DIF-FIGUIER-100", "name": "Diffuseur Figuier 100 ml", "qty": 1}])
        );
        assert_ne!(body["return_id"], id.as_str());
    }

    #[tokio::test]
    async fn returns_are_refused_with_a_reason() {
        let post = |headers: &'static [(&'static str, &'static str)], body: Value| {
            call(
                router(shop(), None),
                "POST",
                "/returns",
                headers,
                Some(body),
            )
        };
        // Not delivered yet.
        let (status, body) = post(&[CLAIRE], json!({"order_id": "ML-10421", "reason": "x"})).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("not been delivered")
        );
        // Still being prepared.
        let (status, _) = post(&[JAMES], json!({"order_id": "ML-10433", "reason": "x"})).await;
        assert_eq!(status, StatusCode::CONFLICT);
        // Delivered more than 30 days ago.
        let (status, body) = post(&[JAMES], json!({"order_id": "ML-10297", "reason": "x"})).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(body["error"].as_str().unwrap().contains("30 days"));
        // Someone else's order, or no such order.
        let (status, body) = post(&[JAMES], json!({"order_id": "ML-10388", "reason": "x"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], NO_SUCH_ORDER);
        let (status, _) = post(&[CLAIRE], json!({"order_id": "ML-1", "reason": "x"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // No verified phone.
        let (status, _) = post(&[], json!({"order_id": "ML-10388", "reason": "x"})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // An item that is not in the order; no reason; not JSON of the right shape.
        let (status, _) = post(
            &[CLAIRE],
            json!({"order_id": "ML-10388", "reason": "x", "items": ["BOU-FOURVIERE-300"]}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, _) = post(&[CLAIRE], json!({"order_id": "ML-10388", "reason": "  "})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, body) = post(&[CLAIRE], json!({"reason": "x"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].is_string());
    }

    #[test]
    fn the_return_window_is_thirty_days_from_delivery() {
        let now = At::now();
        let shop = Shop::from_json(&sample_json(now)).unwrap();
        let request = ReturnRequest {
            order_id: "ML-10388".into(),
            reason: "Too big".into(),
            items: Some(vec!["DIF-FIGUIER-100".into()]),
        };
        let phone = Some("+33612345678");
        // Delivered 5 days before `now`: 25 more days are fine, 25 days and a minute are not.
        let late = shop.create_return(
            phone,
            &request,
            now.shifted(days(25) + SignedDuration::from_mins(1)),
        );
        assert!(matches!(
            late,
            Err(ApiError {
                status: StatusCode::CONFLICT,
                ..
            })
        ));
        let last_day = shop.create_return(phone, &request, now.shifted(days(25)));
        assert!(last_day.is_ok(), "{last_day:?}");
    }

    #[test]
    fn bad_files_are_reported_with_their_path() {
        let dir = std::env::temp_dir().join(format!("demo-shop-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shop.json");
        std::fs::write(&path, "{\"currency\": \"EUR\", \"products\": [").unwrap();
        let error = Shop::load(&path).unwrap_err().to_string();
        assert!(error.contains("shop.json"), "{error}");

        let dup = r#"{"currency": "EUR", "products": [
            {"sku": "A", "name": "A", "category": "c", "variants": [{"sku": "A", "label": "x", "price_cents": 1, "stock": 1}]}]}"#;
        std::fs::write(&path, dup).unwrap();
        let error = Shop::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("shop.json") && error.contains("used twice"),
            "{error}"
        );

        let missing = Shop::load(&dir.join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing.json"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_example_file_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo-shop.json");
        let shop = match Shop::load(Path::new(path)) {
            Ok(shop) => shop,
            Err(e) => panic!("{e}"),
        };
        assert!(shop.products.len() >= 10);
        let claire: Vec<&str> = shop
            .orders_of("+33612345678")
            .iter()
            .map(|o| o.id.as_str())
            .collect();
        assert_eq!(claire, ["ML-10421", "ML-10388"]);
        let james = shop.orders_of("+447700900123");
        assert_eq!(james.len(), 1);
        assert_eq!(james[0].id, "ML-10433");
        assert_eq!(james[0].status, OrderStatus::Processing);
        assert_eq!(james[0].name, "James Whitfield");
    }

    #[test]
    fn folding_drops_accents_and_case() {
        assert_eq!(fold("Soir à FOURVIÈRE"), "soir a fourviere");
        assert_eq!(fold("Cœur d’été"), "coeur d'ete");
        assert_eq!(
            normalize_phone("+33 6 12 34 56 78").as_deref(),
            Some("+33612345678")
        );
        assert_eq!(normalize_phone("0612345678"), None);
    }
}
