//! Merchant tools: HTTP endpoints of the merchant's own systems, declared as `[[tools]]` in
//! concierge.toml. The gateway, not the model, says whose data a call is about: it adds the
//! verified customer identity as headers, and passes only the arguments the schema declares.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::definition::is_builtin;
use super::llm::ToolSpec;
use crate::config::ToolConfig;
use crate::domain::{ChannelId, ContactId, ConversationId};

/// Headers the gateway sets on every tool call; a tool's own headers may not use them.
pub const IDENTITY_PREFIX: &str = "x-concierge-";

/// Characters left as they are in a URL path segment or query value.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Who a turn is about, as the channel verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub channel: ChannelId,
    pub contact: ContactId,
    pub conversation: ConversationId,
    /// E.164, when the channel vouches for the customer's number.
    pub phone: Option<String>,
}

struct MerchantTool {
    config: ToolConfig,
    method: Method,
    parameters: Value,
    /// The argument names the schema declares; `None` when it declares none (all pass).
    properties: Option<BTreeSet<String>>,
    required: Vec<String>,
    placeholders: Vec<String>,
}

/// The declared merchant tools, ready to call.
pub struct MerchantTools {
    tools: BTreeMap<String, MerchantTool>,
    http: reqwest::Client,
}

/// What a tool call gave, as the model will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    pub outcome: ToolOutcome,
    /// The backend's answer (JSON or text), or an error the agent can explain.
    pub content: String,
}

/// How a merchant tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOutcome {
    /// The backend answered with a 2xx.
    Ok,
    /// The backend answered with another status.
    HttpError,
    Timeout,
    /// The backend could not be reached.
    Unreachable,
    /// The answer broke off midway.
    CutOff,
    /// The arguments were not an object, or a required one was missing: never sent.
    InvalidArguments,
    UnknownTool,
}

impl ToolOutcome {
    /// A fixed word, for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            ToolOutcome::Ok => "ok",
            ToolOutcome::HttpError => "http_error",
            ToolOutcome::Timeout => "timeout",
            ToolOutcome::Unreachable => "unreachable",
            ToolOutcome::CutOff => "cut_off",
            ToolOutcome::InvalidArguments => "invalid_arguments",
            ToolOutcome::UnknownTool => "unknown_tool",
        }
    }
}

impl ToolOutput {
    fn error(outcome: ToolOutcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            content: json!({ "error": message.into() }).to_string(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.outcome == ToolOutcome::Ok
    }
}

/// Checks the `[[tools]]` declarations: `(key, message)` for each mistake.
pub fn check(tools: &[ToolConfig]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, tool) in tools.iter().enumerate() {
        let key = |k: &str| format!("tools[{i}].{k}");
        let valid_name = !tool.name.is_empty()
            && tool.name.len() <= 64
            && tool
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            problems.push((
                key("name"),
                format!(
                    "`{}` is not a valid tool name (letters, digits, _ and -, at most 64)",
                    tool.name
                ),
            ));
        }
        if is_builtin(&tool.name) {
            problems.push((key("name"), format!("`{}` is a built-in tool", tool.name)));
        }
        if !seen.insert(tool.name.clone()) {
            problems.push((key("name"), format!("a second tool named `{}`", tool.name)));
        }
        if tool.description.trim().is_empty() {
            problems.push((
                key("description"),
                "is empty: the model reads it to decide when to call the tool".into(),
            ));
        }
        if parse_method(&tool.method).is_none() {
            problems.push((
                key("method"),
                format!(
                    "`{}` is not one of GET, POST, PUT, PATCH, DELETE",
                    tool.method
                ),
            ));
        }
        let (properties, _) = schema_fields(tool);
        if let Some(parameters) = &tool.parameters
            && parameters.get("type").and_then(|t| t.as_str()) != Some("object")
        {
            problems.push((
                key("parameters"),
                "must be a JSON Schema with type = \"object\"".into(),
            ));
        }
        let placeholders = placeholders(&tool.url);
        for p in &placeholders {
            if !properties.as_ref().is_some_and(|props| props.contains(p)) {
                problems.push((
                    key("url"),
                    format!("`{{{p}}}` is not an argument declared in parameters.properties"),
                ));
            }
        }
        let sample = placeholders.iter().fold(tool.url.clone(), |url, p| {
            url.replace(&format!("{{{p}}}"), "x")
        });
        match reqwest::Url::parse(&sample) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => problems.push((key("url"), format!("`{}` is not an http(s) URL", tool.url))),
        }
        for (name, value) in &tool.headers {
            if name.to_ascii_lowercase().starts_with(IDENTITY_PREFIX) {
                problems.push((
                    key("headers"),
                    format!("`{name}`: X-Concierge-* headers are set by the gateway"),
                ));
            } else if HeaderName::from_bytes(name.as_bytes()).is_err()
                || HeaderValue::from_str(value.expose()).is_err()
            {
                problems.push((
                    key("headers"),
                    format!("`{name}` is not a valid header name and value"),
                ));
            }
        }
        if tool.timeout_secs == 0 {
            problems.push((key("timeout_secs"), "must be above 0".into()));
        }
    }
    problems
}

fn parse_method(method: &str) -> Option<Method> {
    match method.to_ascii_uppercase().as_str() {
        "GET" => Some(Method::GET),
        "POST" => Some(Method::POST),
        "PUT" => Some(Method::PUT),
        "PATCH" => Some(Method::PATCH),
        "DELETE" => Some(Method::DELETE),
        _ => None,
    }
}

fn placeholders(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = url;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        found.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    found
}

fn schema_fields(tool: &ToolConfig) -> (Option<BTreeSet<String>>, Vec<String>) {
    let Some(parameters) = &tool.parameters else {
        return (Some(BTreeSet::new()), Vec::new());
    };
    let properties = parameters
        .get("properties")
        .and_then(|p| p.as_table())
        .map(|t| t.keys().cloned().collect());
    let required = parameters
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (properties, required)
}

fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// An argument as it goes into a URL: strings as they are, anything else as JSON.
fn as_url_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl MerchantTools {
    /// Builds the tools from declarations that passed [`check`]; any left invalid are skipped.
    pub fn new(configs: &[ToolConfig], http: reqwest::Client) -> Self {
        let mut tools = BTreeMap::new();
        for config in configs {
            let Some(method) = parse_method(&config.method) else {
                continue;
            };
            let parameters = config
                .parameters
                .as_ref()
                .map(|t| toml_to_json(&toml::Value::Table(t.clone())))
                .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
            let (properties, required) = schema_fields(config);
            tools.insert(
                config.name.clone(),
                MerchantTool {
                    placeholders: placeholders(&config.url),
                    config: config.clone(),
                    method,
                    parameters,
                    properties,
                    required,
                },
            );
        }
        Self { tools, http }
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.tools.keys().cloned().collect()
    }

    pub fn spec(&self, name: &str) -> Option<ToolSpec> {
        self.tools.get(name).map(|t| ToolSpec {
            name: t.config.name.clone(),
            description: t.config.description.clone(),
            parameters: t.parameters.clone(),
        })
    }

    /// Calls a tool for the customer `identity`. Never fails: what went wrong comes back as
    /// an error the agent can explain.
    pub async fn call(&self, name: &str, arguments: &Value, identity: &Identity) -> ToolOutput {
        let Some(tool) = self.tools.get(name) else {
            return ToolOutput::error(
                ToolOutcome::UnknownTool,
                format!("there is no tool named `{name}`"),
            );
        };
        let empty = Map::new();
        let arguments = match arguments {
            Value::Object(map) => map,
            Value::Null => &empty,
            _ => {
                return ToolOutput::error(
                    ToolOutcome::InvalidArguments,
                    "the arguments must be a JSON object",
                );
            }
        };
        // Only declared arguments pass: whatever else the model adds (another customer's
        // phone number, say) never reaches the merchant.
        let mut args: BTreeMap<&str, &Value> = arguments
            .iter()
            .filter(|(k, v)| {
                !v.is_null() && tool.properties.as_ref().is_none_or(|p| p.contains(*k))
            })
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let dropped: Vec<&String> = arguments
            .keys()
            .filter(|k| !args.contains_key(k.as_str()))
            .collect();
        if !dropped.is_empty() {
            tracing::info!(tool = name, ?dropped, "undeclared tool arguments dropped");
        }
        if let Some(missing) = tool
            .required
            .iter()
            .find(|r| !args.contains_key(r.as_str()))
        {
            return ToolOutput::error(
                ToolOutcome::InvalidArguments,
                format!("the argument `{missing}` is required"),
            );
        }
        let mut url = tool.config.url.clone();
        for p in &tool.placeholders {
            let Some(value) = args.remove(p.as_str()) else {
                return ToolOutput::error(
                    ToolOutcome::InvalidArguments,
                    format!("the argument `{p}` is required"),
                );
            };
            let encoded = utf8_percent_encode(&as_url_value(value), UNRESERVED).to_string();
            url = url.replace(&format!("{{{p}}}"), &encoded);
        }
        let mut request = self
            .http
            .request(tool.method.clone(), &url)
            .timeout(Duration::from_secs(tool.config.timeout_secs.max(1)));
        let with_body = matches!(tool.method, Method::POST | Method::PUT | Method::PATCH);
        if with_body {
            let body: Map<String, Value> = args
                .iter()
                .map(|(k, v)| (k.to_string(), (*v).clone()))
                .collect();
            request = request.json(&Value::Object(body));
        } else if !args.is_empty() {
            let query: Vec<(&str, String)> =
                args.iter().map(|(k, v)| (*k, as_url_value(v))).collect();
            request = request.query(&query);
        }
        for (name, value) in &tool.config.headers {
            request = request.header(name.as_str(), value.expose());
        }
        request = request
            .header("x-concierge-channel", identity.channel.as_str())
            .header("x-concierge-contact", identity.contact.as_str())
            .header("x-concierge-conversation", identity.conversation.as_str());
        if let Some(phone) = &identity.phone {
            request = request.header("x-concierge-phone", phone.as_str());
        }
        let started = std::time::Instant::now();
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return ToolOutput::error(
                    ToolOutcome::Timeout,
                    format!(
                        "the {name} service did not answer within {} s; it may be busy",
                        tool.config.timeout_secs
                    ),
                );
            }
            Err(e) => {
                tracing::warn!(tool = name, error = %crate::channels::outbound_http::without_url(&e), "tool call failed");
                return ToolOutput::error(
                    ToolOutcome::Unreachable,
                    format!("the {name} service cannot be reached"),
                );
            }
        };
        let status = response.status();
        let limit = tool.config.max_response_bytes;
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = limit.saturating_sub(body.len());
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        truncated = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return ToolOutput::error(
                        ToolOutcome::Timeout,
                        format!(
                            "the {name} service did not answer within {} s; it may be busy",
                            tool.config.timeout_secs
                        ),
                    );
                }
                Err(_) => {
                    return ToolOutput::error(
                        ToolOutcome::CutOff,
                        format!("the {name} service's answer was cut off"),
                    );
                }
            }
        }
        tracing::debug!(
            tool = name,
            status = status.as_u16(),
            bytes = body.len(),
            ms = started.elapsed().as_millis() as u64,
            "tool called"
        );
        let mut text = String::from_utf8_lossy(&body).into_owned();
        if truncated {
            text.push_str("\n[answer cut: too long]");
        }
        if status.is_success() {
            ToolOutput {
                outcome: ToolOutcome::Ok,
                content: text,
            }
        } else {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or(text);
            ToolOutput {
                outcome: ToolOutcome::HttpError,
                content: json!({ "error": detail, "status": status.as_u16() }).to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(url: &str, parameters: &str) -> ToolConfig {
        ToolConfig {
            name: "order_status".into(),
            description: "d".into(),
            parameters: Some(toml::from_str(parameters).unwrap()),
            method: "GET".into(),
            url: url.into(),
            headers: BTreeMap::new(),
            timeout_secs: 5,
            max_response_bytes: 1000,
        }
    }

    #[test]
    fn placeholders_must_be_declared_arguments() {
        let ok = tool(
            "http://shop/orders/{order_id}",
            "type = \"object\"\n[properties.order_id]\ntype = \"string\"",
        );
        assert!(check(&[ok]).is_empty());
        let bad = tool("http://shop/orders/{id}", "type = \"object\"");
        let problems = check(&[bad]);
        assert_eq!(problems[0].0, "tools[0].url");
    }

    #[test]
    fn identity_headers_are_reserved() {
        let mut t = tool("http://shop/x", "type = \"object\"");
        t.headers.insert(
            "X-Concierge-Phone".into(),
            crate::config::Secret::new("+33600000000"),
        );
        assert_eq!(check(&[t])[0].0, "tools[0].headers");
    }
}
