//! The Cloud API's webhook payload, as Meta sends it. Every field we do not need is ignored,
//! every field we need is optional where Meta has ever omitted it, and unknown message types
//! deserialize (as `Unsupported`) instead of failing the whole batch.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Notification {
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
pub struct Change {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub value: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct Value {
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub messages: Vec<serde_json::Value>,
    #[serde(default)]
    pub statuses: Vec<serde_json::Value>,
    /// Faults of the number itself, not of one message (a rate limit hit).
    #[serde(default)]
    pub errors: Vec<serde_json::Value>,
    /// A template's review (`message_template_status_update`: APPROVED, REJECTED, PAUSED…).
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub message_template_name: Option<String>,
    #[serde(default)]
    pub message_template_language: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// A template's quality (`message_template_quality_update`: GREEN, YELLOW, RED).
    #[serde(default)]
    pub new_quality_score: Option<String>,
    #[serde(default)]
    pub previous_quality_score: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub phone_number_id: String,
}

#[derive(Debug, Deserialize)]
pub struct Contact {
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub profile: Option<Profile>,
}

#[derive(Debug, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub name: Option<String>,
}

/// One inbound message. A typed part that cannot be read is left empty (the message becomes
/// `Unsupported`) rather than losing the whole message.
#[derive(Debug, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub from_user_id: Option<String>,
    pub id: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, deserialize_with = "lenient")]
    pub context: Option<Context>,
    #[serde(default, deserialize_with = "lenient")]
    pub text: Option<Text>,
    #[serde(default, deserialize_with = "lenient")]
    pub image: Option<Media>,
    #[serde(default, deserialize_with = "lenient")]
    pub audio: Option<Media>,
    #[serde(default, deserialize_with = "lenient")]
    pub video: Option<Media>,
    #[serde(default, deserialize_with = "lenient")]
    pub document: Option<Media>,
    #[serde(default, deserialize_with = "lenient")]
    pub sticker: Option<Media>,
    #[serde(default, deserialize_with = "lenient")]
    pub location: Option<Location>,
    #[serde(default, deserialize_with = "lenient")]
    pub interactive: Option<Interactive>,
    #[serde(default, deserialize_with = "lenient")]
    pub button: Option<Button>,
    #[serde(default, deserialize_with = "lenient")]
    pub reaction: Option<Reaction>,
    /// `type: "order"`: a cart sent from the catalogue.
    #[serde(default)]
    pub order: Option<Order>,
    /// `type: "contacts"`: contact cards the customer shared.
    #[serde(default)]
    pub contacts: Vec<SharedContact>,
    /// `type: "revoke"`: the customer deleted an earlier message.
    #[serde(default)]
    pub revoke: Option<Revoke>,
    /// `type: "edit"`: the customer changed an earlier message.
    #[serde(default)]
    pub edit: Option<Edit>,
    /// `type: "system"`: a changed number or identity.
    #[serde(default, deserialize_with = "lenient")]
    pub system: Option<System>,
}

#[derive(Debug, Deserialize)]
pub struct System {
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `user_changed_number`: the customer's new id.
    #[serde(default)]
    pub wa_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Context {
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Text {
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Deserialize)]
pub struct Media {
    pub id: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Interactive {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub button_reply: Option<Reply>,
    #[serde(default)]
    pub list_reply: Option<Reply>,
    /// A completed Flow.
    #[serde(default)]
    pub nfm_reply: Option<NfmReply>,
}

#[derive(Debug, Deserialize)]
pub struct Reply {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Button {
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Deserialize)]
pub struct Reaction {
    pub message_id: String,
    #[serde(default)]
    pub emoji: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Status {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub recipient_id: Option<String>,
    #[serde(default)]
    pub recipient_user_id: Option<String>,
    /// What we gave the send as `biz_opaque_callback_data`, echoed back.
    #[serde(default)]
    pub biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    pub errors: Vec<ApiError>,
}

#[derive(Debug, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub error_data: Option<ErrorData>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorData {
    #[serde(default)]
    pub details: Option<String>,
}

/// The body of an error answer from the Graph API.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

/// The answer to a send.
#[derive(Debug, Deserialize)]
pub struct SendResponse {
    #[serde(default)]
    pub messages: Vec<SentMessage>,
}

#[derive(Debug, Deserialize)]
pub struct SentMessage {
    pub id: String,
}

/// The answer to an upload to POST /{phone-number-id}/media.
#[derive(Debug, Deserialize)]
pub struct UploadResponse {
    pub id: String,
}

/// The answer to GET /{media-id}.
#[derive(Debug, Deserialize)]
pub struct MediaUrl {
    pub url: String,
    #[serde(default)]
    pub mime_type: Option<String>,
}

/// Reads an optional part, treating one that does not have the expected shape as absent.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).ok())
}

/// An edited message: the original's id and the message as it is now (no id or sender of
/// its own).
#[derive(Debug, Deserialize)]
pub struct Edit {
    pub original_message_id: String,
    pub message: serde_json::Map<String, serde_json::Value>,
}

/// A contact card shared in a message (not the sender's own profile, `Value::contacts`).
#[derive(Debug, Deserialize)]
pub struct SharedContact {
    #[serde(default)]
    pub name: Option<ContactName>,
    #[serde(default)]
    pub phones: Vec<ContactPhone>,
    #[serde(default)]
    pub emails: Vec<ContactEmail>,
}

#[derive(Debug, Deserialize)]
pub struct ContactName {
    #[serde(default)]
    pub formatted_name: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ContactPhone {
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ContactEmail {
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NfmReply {
    /// The form's answers, a JSON object written as a string.
    pub response_json: String,
}

#[derive(Debug, Deserialize)]
pub struct Order {
    pub catalog_id: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub product_items: Vec<ProductItem>,
}

#[derive(Debug, Deserialize)]
pub struct ProductItem {
    pub product_retailer_id: String,
    pub quantity: u32,
    #[serde(default)]
    pub item_price: Option<serde_json::Number>,
    #[serde(default)]
    pub currency: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Revoke {
    pub original_message_id: String,
}
