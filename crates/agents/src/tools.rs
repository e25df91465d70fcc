//! Merchant tools: HTTP endpoints of the merchant's own systems, declared as `[[tools]]` in
//! concierge.toml. The gateway, not the model, says whose data a call is about: it adds the
//! verified customer identity as headers, and passes only the arguments the schema declares.
//! An argument never changes where a call goes: placeholders are allowed only in the URL's
//! path and query, every byte outside the unreserved set is encoded (the dot too), a path
//! value that would be an empty, `.` or `..` segment is refused, and redirects are not
//! followed unless the tool opts in to same-origin ones.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value, json};

use super::ToolConfig;
use super::definition::is_builtin;
use super::llm::ToolSpec;
use concierge_domain::{ChannelId, ContactId, ConversationId};

/// Headers the gateway sets on every tool call; a tool's own headers may not use them.
pub const IDENTITY_PREFIX: &str = "x-concierge-";

/// Characters left as they are where an argument goes into a URL: the unreserved ones but
/// the dot, so that no value reads as a `.` or `..` path segment.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// The most redirects a `follow_redirects = "same-origin"` tool follows in one call.
const MAX_REDIRECTS: usize = 5;

/// A tool's `follow_redirects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redirects {
    None,
    SameOrigin,
}

fn parse_redirects(value: &str) -> Option<Redirects> {
    match value {
        "none" => Some(Redirects::None),
        "same-origin" => Some(Redirects::SameOrigin),
        _ => None,
    }
}

/// A piece of a tool's URL: text as written, or a placeholder in the path or the query.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Path(String),
    Query(String),
}

/// Where a URL leads and how many path segments it has: what no argument may change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    origin: Origin,
    segments: usize,
}

impl Shape {
    fn of(url: &Url) -> Shape {
        Shape {
            origin: origin(url),
            segments: url.path_segments().map_or(0, |s| s.count()),
        }
    }
}

/// Scheme, host and port (the scheme's default when none is written).
type Origin = (String, Option<String>, Option<u16>);

fn origin(url: &Url) -> Origin {
    (
        url.scheme().to_string(),
        url.host_str().map(str::to_string),
        url.port_or_known_default(),
    )
}

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
    pieces: Vec<Piece>,
    /// The URL's shape with every placeholder filled; `None` if it does not parse.
    shape: Option<Shape>,
    redirects: Redirects,
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
    /// The arguments were not an object, a required one was missing, or one would have
    /// changed the URL's path (an empty, `.` or `..` segment): never sent.
    InvalidArguments,
    /// The backend answered with a redirect that is not followed (another origin, or the
    /// tool does not follow redirects): its body is not read.
    Redirect,
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
            ToolOutcome::Redirect => "redirect",
            ToolOutcome::UnknownTool => "unknown_tool",
        }
    }
}

/// What the model reads when the merchant's service did not answer in time.
fn timed_out(name: &str, secs: u64) -> ToolOutput {
    ToolOutput::error(
        ToolOutcome::Timeout,
        format!("the {name} service did not answer within {secs} s; it may be busy"),
    )
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
        if let Some(part) = misplaced_placeholder(&tool.url, &placeholders) {
            problems.push((
                key("url"),
                format!(
                    "`{}` has a placeholder in its {part}: placeholders may only be in the path and the query",
                    tool.url
                ),
            ));
        } else {
            match Url::parse(&fill(&tool.url, &placeholders, "x")) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => problems.push((key("url"), format!("`{}` is not an http(s) URL", tool.url))),
            }
        }
        if parse_redirects(&tool.follow_redirects).is_none() {
            problems.push((
                key("follow_redirects"),
                format!(
                    "`{}` is not one of \"none\", \"same-origin\"",
                    tool.follow_redirects
                ),
            ));
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

/// The URL with every placeholder replaced by `value`.
fn fill(url: &str, placeholders: &[String], value: &str) -> String {
    placeholders.iter().fold(url.to_string(), |url, p| {
        url.replace(&format!("{{{p}}}"), value)
    })
}

/// The part of the URL a placeholder is in, when it is not the path or the query: the
/// scheme, userinfo, host, port or fragment.
fn misplaced_placeholder(url: &str, placeholders: &[String]) -> Option<&'static str> {
    if placeholders.is_empty() {
        return None;
    }
    // As written: `{scheme}://shop`, `http://{user}@shop`, `http://{host}`, `http://shop:{port}`.
    if let Some((scheme, rest)) = url.split_once("://") {
        if scheme.contains('{') {
            return Some("scheme");
        }
        let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let (userinfo, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
        if userinfo.contains('{') {
            return Some("userinfo");
        }
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, port),
            _ => (host_port, ""),
        };
        if host.contains('{') {
            return Some("host");
        }
        if port.contains('{') {
            return Some("port");
        }
        if rest[end..]
            .split_once('#')
            .is_some_and(|(_, fragment)| fragment.contains('{'))
        {
            return Some("fragment");
        }
    }
    // However written (`http:{host}/x` parses too): two values must lead to the same place.
    let (Ok(a), Ok(b)) = (
        Url::parse(&fill(url, placeholders, "1")),
        Url::parse(&fill(url, placeholders, "2")),
    ) else {
        return None;
    };
    if a.scheme() != b.scheme() {
        Some("scheme")
    } else if a.username() != b.username() || a.password() != b.password() {
        Some("userinfo")
    } else if a.host_str() != b.host_str() {
        Some("host")
    } else if a.port() != b.port() {
        Some("port")
    } else if a.fragment() != b.fragment() {
        Some("fragment")
    } else {
        None
    }
}

/// The URL as text and placeholders, each placeholder marked as in the path or the query.
fn pieces(url: &str) -> Vec<Piece> {
    let mut found = Vec::new();
    let mut in_query = false;
    let mut rest = url;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        let text = &rest[..start];
        in_query |= text.contains('?');
        found.push(Piece::Text(text.to_string()));
        let name = after[..end].to_string();
        found.push(if in_query {
            Piece::Query(name)
        } else {
            Piece::Path(name)
        });
        rest = &after[end + 1..];
    }
    found.push(Piece::Text(rest.to_string()));
    found
}

/// Whether a value may be a path segment: not empty, and not `.` or `..` however written
/// (blanks around it, fullwidth or other look-alike dots that a server could fold).
fn is_segment_value(value: &str) -> bool {
    let core = value.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    let dot = |c: char| matches!(c, '.' | '\u{FF0E}' | '\u{2024}' | '\u{FE52}');
    !core.is_empty() && !core.chars().all(|c| dot(c) || c.is_whitespace())
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
    /// The tools have an HTTP client of their own, which never follows a redirect by itself.
    pub fn new(configs: &[ToolConfig]) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("concierge/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let tools = configs
            .iter()
            .filter_map(|config| Some((config.name.clone(), MerchantTool::from_config(config)?)))
            .collect();
        Ok(Self { tools, http })
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
        let call = match tool.plan(name, arguments) {
            Ok(call) => call,
            Err(refused) => return refused,
        };
        let timeout = Duration::from_secs(tool.config.timeout_secs.max(1));
        let started = Instant::now();
        let mut response = match self
            .send(tool, name, identity, call, started + timeout)
            .await
        {
            Ok(response) => response,
            Err(failed) => return failed,
        };
        let status = response.status();
        let (body, truncated) =
            match read_bounded(&mut response, tool.config.max_response_bytes).await {
                Ok(read) => read,
                Err(e) if e.is_timeout() => return timed_out(name, tool.config.timeout_secs),
                Err(_) => {
                    return ToolOutput::error(
                        ToolOutcome::CutOff,
                        format!("the {name} service's answer was cut off"),
                    );
                }
            };
        tracing::debug!(
            tool = name,
            status = status.as_u16(),
            bytes = body.len(),
            ms = started.elapsed().as_millis() as u64,
            "tool called"
        );
        answer(status, &body, truncated)
    }

    /// Sends the call, following the redirects the tool allows, until an answer that is not
    /// a redirect. `deadline` bounds the whole chain, not each hop.
    async fn send(
        &self,
        tool: &MerchantTool,
        name: &str,
        identity: &Identity,
        mut call: Call,
        deadline: Instant,
    ) -> Result<reqwest::Response, ToolOutput> {
        let mut followed = 0;
        loop {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let request = tool.request(&self.http, &call, identity, left);
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) if e.is_timeout() => {
                    return Err(timed_out(name, tool.config.timeout_secs));
                }
                Err(e) => {
                    tracing::warn!(tool = name, error = %concierge_channels::outbound_http::without_url(&e), "tool call failed");
                    return Err(ToolOutput::error(
                        ToolOutcome::Unreachable,
                        format!("the {name} service cannot be reached"),
                    ));
                }
            };
            let status = response.status();
            if !status.is_redirection() {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok());
            match tool.redirect(&call, status, location, followed) {
                Ok(next) => {
                    followed += 1;
                    call = next;
                }
                Err(same_origin) => {
                    tracing::info!(
                        tool = name,
                        status = status.as_u16(),
                        same_origin,
                        "a tool's redirect not followed"
                    );
                    return Err(ToolOutput::error(
                        ToolOutcome::Redirect,
                        format!(
                            "the {name} service answered with a redirect ({}), which is not followed",
                            status.as_u16()
                        ),
                    ));
                }
            }
        }
    }
}

/// One request to a tool's backend: what a followed redirect may change.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    method: Method,
    url: Url,
    body: Option<Value>,
}

impl MerchantTool {
    /// A declaration ready to call; `None` for one [`check`] would refuse.
    fn from_config(config: &ToolConfig) -> Option<MerchantTool> {
        let method = parse_method(&config.method)?;
        let redirects = parse_redirects(&config.follow_redirects)?;
        let placeholders = placeholders(&config.url);
        if misplaced_placeholder(&config.url, &placeholders).is_some() {
            return None;
        }
        let parameters = config
            .parameters
            .as_ref()
            .map(|t| toml_to_json(&toml::Value::Table(t.clone())))
            .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
        let (properties, required) = schema_fields(config);
        Some(MerchantTool {
            shape: Url::parse(&fill(&config.url, &placeholders, "x"))
                .ok()
                .map(|u| Shape::of(&u)),
            pieces: pieces(&config.url),
            placeholders,
            config: config.clone(),
            method,
            parameters,
            properties,
            required,
            redirects,
        })
    }

    /// The request the model's arguments make, or why they make none (never sent).
    fn plan(&self, name: &str, arguments: &Value) -> Result<Call, ToolOutput> {
        let mut args = self.declared_arguments(name, arguments)?;
        let url = self.url(name, &args)?;
        for p in &self.placeholders {
            args.remove(p.as_str());
        }
        Ok(self.with_rest(url, &args))
    }

    /// The arguments the schema declares, once every required one is there. Only declared
    /// arguments pass: whatever else the model adds (another customer's phone number, say)
    /// never reaches the merchant.
    fn declared_arguments<'a>(
        &self,
        name: &str,
        arguments: &'a Value,
    ) -> Result<BTreeMap<&'a str, &'a Value>, ToolOutput> {
        let arguments = match arguments {
            Value::Object(map) => Some(map),
            Value::Null => None,
            _ => {
                return Err(ToolOutput::error(
                    ToolOutcome::InvalidArguments,
                    "the arguments must be a JSON object",
                ));
            }
        };
        let args: BTreeMap<&str, &Value> = arguments
            .into_iter()
            .flatten()
            .filter(|(k, v)| {
                !v.is_null() && self.properties.as_ref().is_none_or(|p| p.contains(*k))
            })
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let dropped: Vec<&String> = arguments
            .into_iter()
            .flat_map(|map| map.keys())
            .filter(|k| !args.contains_key(k.as_str()))
            .collect();
        if !dropped.is_empty() {
            tracing::info!(tool = name, ?dropped, "undeclared tool arguments dropped");
        }
        if let Some(missing) = self
            .required
            .iter()
            .find(|r| !args.contains_key(r.as_str()))
        {
            return Err(ToolOutput::error(
                ToolOutcome::InvalidArguments,
                format!("the argument `{missing}` is required"),
            ));
        }
        Ok(args)
    }

    /// The tool's URL with its placeholders filled in, each value encoded; refused when a
    /// value would change where the call goes.
    fn url(&self, name: &str, args: &BTreeMap<&str, &Value>) -> Result<Url, ToolOutput> {
        let mut url = String::new();
        for piece in &self.pieces {
            let (arg, in_path) = match piece {
                Piece::Text(text) => {
                    url.push_str(text);
                    continue;
                }
                Piece::Path(arg) => (arg, true),
                Piece::Query(arg) => (arg, false),
            };
            let Some(value) = args.get(arg.as_str()) else {
                return Err(ToolOutput::error(
                    ToolOutcome::InvalidArguments,
                    format!("the argument `{arg}` is required"),
                ));
            };
            let value = as_url_value(value);
            if in_path && !is_segment_value(&value) {
                tracing::info!(tool = name, argument = %arg, "a path argument that is empty or dots refused");
                return Err(ToolOutput::error(
                    ToolOutcome::InvalidArguments,
                    format!("the argument `{arg}` must be a real value, not empty, `.` or `..`"),
                ));
            }
            url.extend(utf8_percent_encode(&value, URL_VALUE));
        }
        // Belt and braces: whatever the arguments, the call goes where the URL says, with as
        // many path segments.
        match Url::parse(&url) {
            Ok(url) if self.shape.as_ref() == Some(&Shape::of(&url)) => Ok(url),
            _ => Err(ToolOutput::error(
                ToolOutcome::InvalidArguments,
                "the arguments do not fit in the tool's URL",
            )),
        }
    }

    /// Puts the arguments the URL did not take into a JSON body (POST, PUT, PATCH) or the
    /// query (the other methods).
    fn with_rest(&self, mut url: Url, rest: &BTreeMap<&str, &Value>) -> Call {
        let method = self.method.clone();
        let mut body = None;
        if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
            let fields: Map<String, Value> = rest
                .iter()
                .map(|(k, v)| (k.to_string(), (*v).clone()))
                .collect();
            body = Some(Value::Object(fields));
        } else if !rest.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(rest.iter().map(|(k, v)| (*k, as_url_value(v))));
        }
        Call { method, url, body }
    }

    /// The request for one hop: the tool's own headers, then the identity the gateway
    /// vouches for, which the tool's headers may not override (see [`check`]).
    fn request(
        &self,
        http: &reqwest::Client,
        call: &Call,
        identity: &Identity,
        left: Duration,
    ) -> reqwest::RequestBuilder {
        let mut request = http
            .request(call.method.clone(), call.url.clone())
            .timeout(left);
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        for (name, value) in self.headers(identity) {
            request = request.header(name, value);
        }
        request
    }

    /// Every header of a call, in the order they are set: the tool's own, then who the call
    /// is about.
    fn headers<'a>(&'a self, identity: &'a Identity) -> Vec<(&'a str, &'a str)> {
        // Only ever sent to the tool's own origin: a redirect elsewhere is not followed.
        let mut headers: Vec<(&str, &str)> = self
            .config
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.expose()))
            .collect();
        headers.extend([
            ("x-concierge-channel", identity.channel.as_str()),
            ("x-concierge-contact", identity.contact.as_str()),
            ("x-concierge-conversation", identity.conversation.as_str()),
        ]);
        if let Some(phone) = &identity.phone {
            headers.push(("x-concierge-phone", phone.as_str()));
        }
        headers
    }

    /// The next hop of a redirect when the tool follows it (same origin, opted in, under
    /// [`MAX_REDIRECTS`]); else whether it led to the same origin, for the log.
    fn redirect(
        &self,
        call: &Call,
        status: StatusCode,
        location: Option<&str>,
        followed: usize,
    ) -> Result<Call, bool> {
        let next = location.and_then(|l| call.url.join(l).ok());
        let same_origin = next
            .as_ref()
            .is_some_and(|n| origin(n) == origin(&call.url));
        let follow =
            same_origin && self.redirects == Redirects::SameOrigin && followed < MAX_REDIRECTS;
        let Some(url) = next.filter(|_| follow) else {
            return Err(same_origin);
        };
        // As browsers do: a 303, or a 301/302 after a POST, is followed with a GET.
        if status == StatusCode::SEE_OTHER
            || (call.method == Method::POST
                && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND))
        {
            return Ok(Call {
                method: Method::GET,
                url,
                body: None,
            });
        }
        Ok(Call {
            method: call.method.clone(),
            url,
            body: call.body.clone(),
        })
    }
}

/// Reads at most `limit` bytes of the answer; `true` with them when there was more.
async fn read_bounded(
    response: &mut reqwest::Response,
    limit: usize,
) -> reqwest::Result<(Vec<u8>, bool)> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if !take_within(&mut body, &chunk, limit) {
            return Ok((body, true));
        }
    }
    Ok((body, false))
}

/// Appends as much of `chunk` as fits under `limit`; `false` when some of it did not.
fn take_within(body: &mut Vec<u8>, chunk: &[u8], limit: usize) -> bool {
    let room = limit.saturating_sub(body.len());
    if chunk.len() > room {
        body.extend_from_slice(&chunk[..room]);
        return false;
    }
    body.extend_from_slice(chunk);
    true
}

/// What the model reads of an answer: a 2xx as it came (marked when cut), anything else as
/// an error with the backend's own `error` text when it gave one.
fn answer(status: StatusCode, body: &[u8], truncated: bool) -> ToolOutput {
    let mut text = String::from_utf8_lossy(body).into_owned();
    if truncated {
        text.push_str("\n[answer cut: too long]");
    }
    if status.is_success() {
        return ToolOutput {
            outcome: ToolOutcome::Ok,
            content: text,
        };
    }
    let detail = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or(text);
    ToolOutput {
        outcome: ToolOutcome::HttpError,
        content: json!({ "error": detail, "status": status.as_u16() }).to_string(),
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
            follow_redirects: "none".into(),
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
    fn placeholders_only_in_the_path_and_the_query() {
        let params = "type = \"object\"\n[properties.p]\ntype = \"string\"";
        for (url, part) in [
            ("{p}://shop/x", "scheme"),
            ("http://{p}@shop/x", "userinfo"),
            ("http://u:{p}@shop/x", "userinfo"),
            ("http://{p}:18094/stolen", "host"),
            ("http://{p}.shop.example/x", "host"),
            ("http://shop:{p}/x", "port"),
            ("http://[::1]:{p}/x", "port"),
            ("http:{p}/x", "host"),
            ("http://shop/x#{p}", "fragment"),
        ] {
            let problems = check(&[tool(url, params)]);
            assert_eq!(problems.len(), 1, "{url}: {problems:?}");
            assert_eq!(problems[0].0, "tools[0].url");
            assert!(problems[0].1.contains(part), "{url}: {problems:?}");
        }
        for url in [
            "http://shop/x/{p}",
            "http://shop:8080/{p}/detail",
            "http://shop/x?q={p}",
            "http://shop/x/{p}?a=1#top",
        ] {
            assert!(check(&[tool(url, params)]).is_empty(), "{url}");
        }
    }

    #[test]
    fn follow_redirects_is_none_or_same_origin() {
        let mut t = tool("http://shop/x", "type = \"object\"");
        for ok in ["none", "same-origin"] {
            t.follow_redirects = ok.into();
            assert!(check(std::slice::from_ref(&t)).is_empty());
        }
        t.follow_redirects = "all".into();
        assert_eq!(check(&[t])[0].0, "tools[0].follow_redirects");
    }

    #[test]
    fn a_path_value_may_not_be_empty_or_dots() {
        for bad in [
            "",
            ".",
            "..",
            " .. ",
            "\r\n",
            "\u{FF0E}\u{FF0E}",
            "...",
            ". .",
        ] {
            assert!(!is_segment_value(bad), "{bad:?}");
        }
        for ok in ["%2e%2e", "./x", "a.b", "/", "\\", "?", "#", "ML-1"] {
            assert!(is_segment_value(ok), "{ok:?}");
        }
        assert_eq!(
            pieces("http://s/a/{x}/b?q={y}"),
            vec![
                Piece::Text("http://s/a/".into()),
                Piece::Path("x".into()),
                Piece::Text("/b?q=".into()),
                Piece::Query("y".into()),
                Piece::Text(String::new()),
            ]
        );
    }

    fn built(config: ToolConfig) -> MerchantTool {
        MerchantTool::from_config(&config).unwrap()
    }

    fn error_of(output: &ToolOutput) -> String {
        let value: Value = serde_json::from_str(&output.content).unwrap();
        value["error"].as_str().unwrap().to_string()
    }

    const ORDER_ID: &str = "type = \"object\"\nrequired = [\"order_id\"]\n[properties.order_id]\ntype = \"string\"\n[properties.detail]\ntype = \"boolean\"";

    #[test]
    fn a_plan_fills_the_path_encodes_it_and_puts_the_rest_in_the_query() {
        let t = built(tool("http://shop/orders/{order_id}", ORDER_ID));
        let call = t
            .plan(
                "order_status",
                &json!({ "order_id": "A/1.2", "detail": true, "phone": "+1555" }),
            )
            .unwrap();
        assert_eq!(call.method, Method::GET);
        assert_eq!(
            call.url.as_str(),
            "http://shop/orders/A%2F1%2E2?detail=true"
        );
        assert_eq!(call.body, None);
    }

    #[test]
    fn a_post_sends_the_arguments_the_url_did_not_take_as_its_body() {
        let mut config = tool("http://shop/orders/{order_id}", ORDER_ID);
        config.method = "POST".into();
        let call = built(config)
            .plan("order_status", &json!({ "order_id": "7", "detail": false }))
            .unwrap();
        assert_eq!(call.url.as_str(), "http://shop/orders/7");
        assert_eq!(call.body, Some(json!({ "detail": false })));
    }

    #[test]
    fn arguments_that_are_missing_dots_or_not_an_object_are_never_sent() {
        let t = built(tool("http://shop/orders/{order_id}", ORDER_ID));
        for (arguments, why) in [
            (json!(null), "the argument `order_id` is required"),
            (
                json!({ "order_id": null }),
                "the argument `order_id` is required",
            ),
            (json!([1]), "the arguments must be a JSON object"),
            (
                json!({ "order_id": ".." }),
                "the argument `order_id` must be a real value, not empty, `.` or `..`",
            ),
        ] {
            let refused = t.plan("order_status", &arguments).unwrap_err();
            assert_eq!(refused.outcome, ToolOutcome::InvalidArguments);
            assert_eq!(error_of(&refused), why, "{arguments}");
        }
    }

    #[test]
    fn the_request_carries_the_tools_headers_and_the_verified_identity() {
        let mut config = tool("http://shop/orders", "type = \"object\"");
        config.headers.insert(
            "authorization".into(),
            concierge_domain::Secret::new("Bearer k"),
        );
        let t = built(config);
        let identity = Identity {
            channel: ChannelId::parse("web").unwrap(),
            contact: ContactId::parse("+33600000000").unwrap(),
            conversation: ConversationId::parse("c1").unwrap(),
            phone: Some("+33600000000".into()),
        };
        assert_eq!(
            t.headers(&identity),
            [
                ("authorization", "Bearer k"),
                ("x-concierge-channel", "web"),
                ("x-concierge-contact", "+33600000000"),
                ("x-concierge-conversation", "c1"),
                ("x-concierge-phone", "+33600000000"),
            ]
        );
    }

    #[test]
    fn only_same_origin_redirects_are_followed_and_only_when_asked() {
        let mut config = tool("http://shop/a", "type = \"object\"");
        config.method = "POST".into();
        let call = Call {
            method: Method::POST,
            url: Url::parse("http://shop/a").unwrap(),
            body: Some(json!({ "x": 1 })),
        };
        let none = built(config.clone());
        assert_eq!(
            none.redirect(&call, StatusCode::TEMPORARY_REDIRECT, Some("/b"), 0),
            Err(true)
        );
        config.follow_redirects = "same-origin".into();
        let same = built(config);
        let kept = same
            .redirect(&call, StatusCode::TEMPORARY_REDIRECT, Some("/b"), 0)
            .unwrap();
        assert_eq!(
            kept,
            Call {
                url: Url::parse("http://shop/b").unwrap(),
                ..call.clone()
            }
        );
        let get = same
            .redirect(&call, StatusCode::FOUND, Some("/b"), 0)
            .unwrap();
        assert_eq!((get.method, get.body), (Method::GET, None));
        for (location, followed) in [
            (Some("http://elsewhere/b"), 0),
            (Some("https://shop/b"), 0),
            (None, 0),
            (Some("/b"), MAX_REDIRECTS),
        ] {
            let refused = same.redirect(&call, StatusCode::FOUND, location, followed);
            assert!(refused.is_err(), "{location:?} after {followed}");
        }
    }

    #[test]
    fn a_body_is_read_up_to_its_limit() {
        let mut body = Vec::new();
        assert!(take_within(&mut body, b"abc", 5));
        assert!(!take_within(&mut body, b"defg", 5));
        assert_eq!(body, b"abcde");
        assert!(!take_within(&mut body, b"h", 5));
        assert_eq!(body, b"abcde");
    }

    #[test]
    fn an_answer_is_marked_when_cut_and_an_error_keeps_the_backends_words() {
        let ok = answer(StatusCode::OK, b"{\"a\":1}", true);
        assert_eq!(ok.outcome, ToolOutcome::Ok);
        assert_eq!(ok.content, "{\"a\":1}\n[answer cut: too long]");
        let failed = answer(
            StatusCode::NOT_FOUND,
            b"{\"error\":\"no such order\"}",
            false,
        );
        assert_eq!(failed.outcome, ToolOutcome::HttpError);
        assert_eq!(
            serde_json::from_str::<Value>(&failed.content).unwrap(),
            json!({ "error": "no such order", "status": 404 })
        );
        let plain = answer(StatusCode::BAD_GATEWAY, b"down", false);
        assert_eq!(error_of(&plain), "down");
    }

    #[test]
    fn identity_headers_are_reserved() {
        let mut t = tool("http://shop/x", "type = \"object\"");
        t.headers.insert(
            "X-Concierge-Phone".into(),
            concierge_domain::Secret::new("+33600000000"),
        );
        assert_eq!(check(&[t])[0].0, "tools[0].headers");
    }
}
