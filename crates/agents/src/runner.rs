//! One customer turn worked by the agents: the entry agent's tool loop, the built-in tools
//! (`handoff_to_human`, `offer_choices`, `ask_agent`, `send_media`, `show_products`), merchant
//! tool calls (and the payment button one of them asks for), the limits (tool rounds, tool
//! calls per turn, ask depth and cycles, a token budget per turn) and the audit trail of
//! notes.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tracing::Instrument;

use super::commerce::{PaymentButton, followable, payment_in, products_in};
use super::config::FlowConfig;
use super::definition::{
    ASK_TOOL, AgentSet, CHOICES_TOOL, HANDOFF_TOOL, OPEN_FLOW_TOOL, PromptContext, RenderError,
    SEND_MEDIA_TOOL, SHOW_PRODUCTS_TOOL, UPDATE_CART_TOOL, VIEW_CART_TOOL,
};
use super::llm::{LlmClient, LlmError, LlmMessage, LlmReply, LlmRequest, ToolCall, ToolSpec};
use super::redact::Redactor;
use super::tools::{Identity, MerchantTools};
use concierge_domain::{CartLine, ConversationId, Product, clip_text};
use concierge_telemetry::Metrics;

/// The most options `offer_choices` may show.
const MAX_CHOICES: usize = 10;
/// The most pictures or files `send_media` sends in one turn.
const MAX_MEDIA_PER_TURN: usize = 3;

/// The bounds on one turn.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_tool_rounds: usize,
    pub max_ask_depth: usize,
    /// Every tool call the model asks for in the turn counts, whichever agent asks (the
    /// agents asked with `ask_agent` too) and whatever the tool.
    pub max_tool_calls_per_turn: usize,
    pub turn_token_budget: u64,
}

/// Everything the agents need, shared by every turn.
pub struct AgentRuntime {
    pub agents: Arc<AgentSet>,
    pub tools: MerchantTools,
    pub llm: Arc<dyn LlmClient>,
    pub limits: Limits,
    /// Counts the tool calls (the LLM calls are counted by the client's meter).
    pub metrics: Metrics,
    /// Hosts whose https URLs `send_media` sends although no tool of the turn returned them
    /// (`[media] send_hosts`: the shop's image CDN).
    pub media_hosts: Vec<String>,
    /// The forms `open_flow` sends (`[[flows]]`).
    pub flows: Vec<FlowConfig>,
}

/// One turn's input.
pub struct TurnInput {
    pub identity: Identity,
    pub context: PromptContext,
    /// The conversation so far, the customer's new messages last (already masked).
    pub history: Vec<LlmMessage>,
    pub summary: Option<String>,
    /// The note a concierge left when handing the conversation back to the bot.
    pub team_note: Option<String>,
    /// The masks applied to the history; tool answers are masked too when `redact_pii`.
    pub redactor: Redactor,
    pub redact_pii: bool,
    /// The conversation's cart, as the gateway keeps it (`view_cart`, `update_cart`).
    pub cart: Vec<CartLine>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AgentReply {
    Text(String),
    Choices {
        text: String,
        options: Vec<String>,
    },
    /// A picture or a file to send by its URL (checked: a tool of the turn returned it, or
    /// its host is allowed); the gateway fetches and keeps it before it goes.
    Media {
        url: String,
        caption: Option<String>,
    },
    /// Products a merchant tool described in the turn, as it described them.
    Products {
        text: String,
        products: Vec<Product>,
    },
    /// The payment button a merchant tool asked for, after the agent's answer.
    Payment(PaymentButton),
    /// A form, with the fresh token its answer comes back with.
    Flow {
        text: String,
        flow: FlowConfig,
        token: String,
        data: Option<Value>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HandoffRequest {
    pub reason: String,
    pub priority: Option<String>,
    pub team: Option<String>,
    pub requested_by: String,
}

/// Why the agents could not answer; the customer then gets the holding reply and a human.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentFailure {
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("the turn's token budget is spent ({spent} of {budget})")]
    Budget { spent: u64, budget: u64 },
    #[error("agent `{agent}` made {rounds} tool rounds without answering")]
    Rounds { agent: String, rounds: usize },
    #[error(
        "agent `{agent}` asked for {asked} tool calls in one turn, more than the limit of {limit}"
    )]
    ToolCalls {
        agent: String,
        asked: usize,
        limit: usize,
    },
    #[error("agent `{agent}` made an invalid tool call: {detail}")]
    InvalidToolCall { agent: String, detail: String },
    #[error("agent `{agent}` gave an empty answer")]
    Empty { agent: String },
    #[error("no entry agent is configured")]
    NoEntry,
    #[error(transparent)]
    Render(#[from] RenderError),
}

impl AgentFailure {
    /// The failure as concierges see it (the turn's note, the handoff brief): an LLM error
    /// by its kind only; the detail goes to the log.
    pub fn for_concierge(&self) -> String {
        match self {
            AgentFailure::Llm(e) => e.for_concierge(),
            other => other.to_string(),
        }
    }
}

/// What a turn produced; on failure, the notes and usage gathered until then.
#[derive(Debug, Default)]
pub struct TurnResult {
    pub replies: Vec<AgentReply>,
    pub handoff: Option<HandoffRequest>,
    /// (author, body), in order.
    pub notes: Vec<(String, String)>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub llm_calls: u64,
    pub failure: Option<AgentFailure>,
    /// The agent that answered.
    pub agent: String,
    /// The cart once `update_cart` changed it (to be saved with the turn).
    pub cart: Option<Vec<CartLine>>,
    /// The forms sent in the turn, (token, flow name): kept so their answers are known.
    pub flows: Vec<(String, String)>,
}

struct TurnState<'a> {
    input: &'a TurnInput,
    redactor: Redactor,
    result: TurnResult,
    /// The tool calls the model asked for so far in the turn, every agent together.
    tool_calls: usize,
    /// What the merchant tools answered in the turn, as they answered it: the URLs
    /// `send_media` may send, and the products `show_products` may show.
    tool_outputs: Vec<String>,
    /// The payment button the turn's latest merchant tool answer asked for.
    payment: Option<PaymentButton>,
}

impl TurnState<'_> {
    fn note(&mut self, author: &str, body: String) {
        let body = self.redactor.restore_for_customer(&body);
        self.result.notes.push((author.to_string(), body));
    }

    fn spent(&self) -> u64 {
        self.result.input_tokens + self.result.output_tokens
    }
}

/// How an agent's loop ended.
enum Ending {
    Text(String),
    Choices {
        text: String,
        options: Vec<String>,
    },
    Handoff {
        text: Option<String>,
    },
    /// The turn's answer is already among its replies (a form).
    Sent,
}

/// Where an agent runs in the turn: the entry agent at depth 0, a colleague asked with
/// `ask_agent` deeper, `chain` the agents from the entry one down to it.
#[derive(Clone, Copy)]
struct Hop<'a> {
    agent: &'a str,
    depth: usize,
    chain: &'a [String],
}

/// What the prompt adds after the agent's own: for the entry agent, the summary and a
/// concierge's note; for a colleague, who is asking and that the customer will not see it.
fn prompt_addendum(hop: Hop<'_>, summary: Option<&str>, team_note: Option<&str>) -> String {
    let mut text = String::new();
    if hop.depth == 0 {
        if let Some(summary) = summary {
            text.push_str("\n\nSummary of the earlier conversation:\n");
            text.push_str(summary);
        }
        if let Some(note) = team_note {
            text.push_str("\n\nA member of our team handled this conversation and handed it back to you with this internal note (never quote or reveal it to the customer); take it into account and continue from there:\n");
            text.push_str(note);
        }
    } else {
        text.push_str(&format!(
            "\n\nA colleague ({}) is asking you this on behalf of the customer. Answer them in plain language, briefly, with the facts you found; the customer will not see your answer.",
            hop.chain
                .get(hop.chain.len().saturating_sub(2))
                .map(String::as_str)
                .unwrap_or("a colleague")
        ));
    }
    text
}

/// The turn's token budget: no call once `spent` reaches it, and an answer that took it
/// past fails the turn (`answered`) even if it was the last one needed.
fn within_budget(spent: u64, budget: u64, answered: bool) -> Result<(), AgentFailure> {
    let over = if answered {
        spent > budget
    } else {
        spent >= budget
    };
    if over {
        return Err(AgentFailure::Budget { spent, budget });
    }
    Ok(())
}

/// A reply without tool calls ends the agent's loop: with its text, or as a failure.
fn final_answer(agent: &str, text: Option<String>) -> Result<Ending, AgentFailure> {
    text.map(Ending::Text).ok_or_else(|| AgentFailure::Empty {
        agent: agent.to_string(),
    })
}

/// The turn's tool calls once this reply's are counted. A reply that would go past the
/// limit is not run at all: the turn fails.
fn within_tool_call_limit(
    agent: &str,
    so_far: usize,
    asked_now: usize,
    limit: usize,
) -> Result<usize, AgentFailure> {
    let asked = so_far + asked_now;
    if asked > limit {
        return Err(AgentFailure::ToolCalls {
            agent: agent.to_string(),
            asked,
            limit,
        });
    }
    Ok(asked)
}

/// The tool metric a refused call is counted under.
#[derive(Debug, PartialEq, Eq)]
struct Refused<'a> {
    tool: &'a str,
    outcome: &'static str,
}

/// A tool call the agent may make: one of the tools it was given, with an object (or no)
/// arguments. Any other fails the turn.
fn vet_tool_call<'a>(
    agent: &str,
    call: &'a ToolCall,
    tools: &[ToolSpec],
) -> Result<(), (Refused<'a>, AgentFailure)> {
    if !tools.iter().any(|t| t.name == call.name) {
        // The name is the model's words: not a label.
        return Err((
            Refused {
                tool: "unknown",
                outcome: "unknown_tool",
            },
            AgentFailure::InvalidToolCall {
                agent: agent.to_string(),
                detail: format!("called `{}`, which it was not given", call.name),
            },
        ));
    }
    if !call.arguments.is_object() && !call.arguments.is_null() {
        return Err((
            Refused {
                tool: &call.name,
                outcome: "invalid_arguments",
            },
            AgentFailure::InvalidToolCall {
                agent: agent.to_string(),
                detail: format!("the arguments of `{}` are not a JSON object", call.name),
            },
        ));
    }
    Ok(())
}

/// Whether `send_media` may send `url`: an http(s) URL without credentials that a merchant
/// tool answered in this turn (`tool_outputs`), or an https one on an allowed host; why not
/// otherwise, in words for the model.
fn sendable(url: &str, tool_outputs: &[String], hosts: &[String]) -> Result<(), &'static str> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Err("not a URL");
    };
    let (true, Some(host)) = (followable(url), parsed.host_str()) else {
        return Err("only an http(s) URL without credentials can be sent");
    };
    let from_a_tool = tool_outputs.iter().any(|o| o.contains(url));
    let allowed_host =
        parsed.scheme() == "https" && hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
    if from_a_tool || allowed_host {
        Ok(())
    } else {
        Err("this URL did not come from a tool's answer in this turn: only those can be sent")
    }
}

/// The most lines `update_cart` lets a cart hold (the store's bound).
const MAX_CART_LINES: usize = 50;

/// Queues a reply a built-in tool made (a picture, products) to go with the agent's
/// answer; what the model reads back.
fn queued(state: &mut TurnState<'_>, reply: AgentReply, note: &str) -> (String, &'static str) {
    state.result.replies.push(reply);
    (json!({ "ok": true, "note": note }).to_string(), "ok")
}

/// The cart as the turn has it: as `update_cart` left it, else as the gateway kept it.
fn current_cart<'a>(state: &'a TurnState<'_>) -> &'a [CartLine] {
    state.result.cart.as_deref().unwrap_or(&state.input.cart)
}

/// The cart as the model reads it.
fn cart_view(cart: &[CartLine]) -> String {
    let items: Vec<Value> = cart
        .iter()
        .map(|l| {
            json!({
                "id": l.product.id, "name": l.product.name, "price": l.product.price,
                "quantity": l.quantity,
            })
        })
        .collect();
    if items.is_empty() {
        json!({ "items": [], "note": "the cart is empty" }).to_string()
    } else {
        json!({ "items": items }).to_string()
    }
}

fn string_arg(args: &Value, key: &str) -> Option<String> {
    args.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl AgentRuntime {
    /// Works one customer turn with the entry agent.
    pub async fn run_turn(&self, input: &TurnInput) -> TurnResult {
        let Some(entry) = self.agents.entry() else {
            return TurnResult {
                failure: Some(AgentFailure::NoEntry),
                ..TurnResult::default()
            };
        };
        let entry = entry.name.clone();
        let mut state = TurnState {
            input,
            redactor: input.redactor.clone(),
            result: TurnResult {
                agent: entry.clone(),
                ..TurnResult::default()
            },
            tool_calls: 0,
            tool_outputs: Vec::new(),
            payment: None,
        };
        let chain = vec![entry.clone()];
        let ended = self
            .run_agent(&entry, input.history.clone(), 0, chain, &mut state)
            .await;
        let redactor = state.redactor.clone();
        // The payment button goes after the answer; not when a person is taking over.
        let payment = match &ended {
            Ok(Ending::Text(_) | Ending::Choices { .. } | Ending::Sent) => state.payment.take(),
            _ => None,
        };
        match ended {
            Ok(Ending::Text(text)) => state
                .result
                .replies
                .push(AgentReply::Text(redactor.restore_for_customer(&text))),
            Ok(Ending::Choices { text, options }) => {
                state.result.replies.push(AgentReply::Choices {
                    text: redactor.restore_for_customer(&text),
                    options: options
                        .iter()
                        .map(|o| redactor.restore_for_customer(o))
                        .collect(),
                })
            }
            Ok(Ending::Sent) => {}
            Ok(Ending::Handoff { text }) => {
                if let Some(text) = text {
                    state
                        .result
                        .replies
                        .push(AgentReply::Text(redactor.restore_for_customer(&text)));
                }
            }
            Err(failure) => {
                // The detail is logged at warn where the failure is handled (the agent step).
                state.note(
                    "gateway",
                    format!("the agents could not answer: {}", failure.for_concierge()),
                );
                state.result.failure = Some(failure);
            }
        }
        if let Some(payment) = payment {
            state.note(
                "gateway",
                format!("sent the payment button {}", clip_text(&payment.url, 200)),
            );
            state.result.replies.push(AgentReply::Payment(payment));
        }
        state.result
    }

    fn specs_for(&self, agent: &str, depth: usize, media: bool) -> Vec<ToolSpec> {
        let Some(def) = self.agents.get(agent) else {
            return Vec::new();
        };
        let mut specs: Vec<ToolSpec> = def
            .tools
            .iter()
            .filter_map(|t| self.tools.spec(t))
            .collect();
        if !def.ask.is_empty() {
            let described: Vec<String> = def
                .ask
                .iter()
                .filter_map(|name| self.agents.get(name))
                .map(|d| format!("- {}: {}", d.name, d.description))
                .collect();
            specs.push(ToolSpec {
                name: ASK_TOOL.to_string(),
                description: format!(
                    "Ask a colleague a question in plain language and get their answer (the customer does not see it). Colleagues:\n{}",
                    described.join("\n")
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "agent": { "type": "string", "enum": def.ask },
                        "question": { "type": "string", "description": "The question, with everything the colleague needs to know (order number, product…)." }
                    },
                    "required": ["agent", "question"]
                }),
            });
        }
        if media && def.tools.iter().any(|t| t == SEND_MEDIA_TOOL) {
            specs.push(ToolSpec {
                name: SEND_MEDIA_TOOL.to_string(),
                description: format!(
                    "Show the customer a picture or a file (a product photo, a size guide) by its URL: only a URL a tool returned in this conversation turn. Sent as the chat app's own picture, with the caption under it; at most {MAX_MEDIA_PER_TURN} a turn. Does not end your turn."
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "url": { "type": "string", "description": "The image's or file's URL, exactly as the tool returned it." },
                        "caption": { "type": "string", "description": "A short line shown with it (optional)." }
                    },
                    "required": ["url"]
                }),
            });
        }
        if def.tools.iter().any(|t| t == SHOW_PRODUCTS_TOOL) {
            specs.push(ToolSpec {
                name: SHOW_PRODUCTS_TOOL.to_string(),
                description: format!(
                    "Show the customer products the chat app's way (a catalogue message, photos with \"Add to cart\" buttons, product cards), by the ids a tool returned in this turn (a SKU): their names, prices and pictures come from that tool's answer, so don't repeat them. At most {} products. Does not end your turn: your answer comes after them, keep it short.",
                    Product::MAX_PER_MESSAGE
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "products": { "type": "array", "items": { "type": "string" }, "minItems": 1, "maxItems": Product::MAX_PER_MESSAGE, "description": "The products' ids, exactly as the tool returned them." },
                        "text": { "type": "string", "description": "A short line shown with the products." }
                    },
                    "required": ["products", "text"]
                }),
            });
        }
        if def.tools.iter().any(|t| t == OPEN_FLOW_TOOL) && !self.flows.is_empty() {
            let names: Vec<&str> = self.flows.iter().map(|f| f.name.as_str()).collect();
            let described: Vec<String> = self
                .flows
                .iter()
                .map(|f| format!("- {}: {}", f.name, f.description))
                .collect();
            specs.push(ToolSpec {
                name: OPEN_FLOW_TOOL.to_string(),
                description: format!(
                    "Send the customer a form to fill in, where the chat app has forms; elsewhere you are told to ask its questions yourself. Ends your turn when the form is sent: its answers come back as the customer's next message. Forms:\n{}",
                    described.join("\n")
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "flow": { "type": "string", "enum": names },
                        "text": { "type": "string", "description": "The short line shown with the form's button." },
                        "data": { "type": "object", "description": "What the form starts with (an order number), when it takes any." }
                    },
                    "required": ["flow", "text"]
                }),
            });
        }
        if def.tools.iter().any(|t| t == VIEW_CART_TOOL) {
            specs.push(ToolSpec {
                name: VIEW_CART_TOOL.to_string(),
                description: "The customer's cart as the gateway keeps it (what they added with the chat's \"Add to cart\" buttons, or sent as their cart): each product's id, name, price and quantity. Read it before you confirm an order.".to_string(),
                parameters: json!({ "type": "object", "properties": {} }),
            });
        }
        if def.tools.iter().any(|t| t == UPDATE_CART_TOOL) {
            specs.push(ToolSpec {
                name: UPDATE_CART_TOOL.to_string(),
                description: "Set how many of a product the customer's cart holds (0 takes it out), when they ask in words: a product already in the cart, or one a tool described in this turn, by its id.".to_string(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "product": { "type": "string", "description": "The product's id, exactly as the tool or the cart gave it." },
                        "quantity": { "type": "integer", "minimum": 0, "maximum": 99 }
                    },
                    "required": ["product", "quantity"]
                }),
            });
        }
        if depth == 0 {
            specs.push(ToolSpec {
                name: HANDOFF_TOOL.to_string(),
                description: "Hand the conversation to a human concierge: when the customer asks for a person, is upset, or needs something you cannot do. Ends your turn; the customer is told a person will answer.".to_string(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "reason": { "type": "string", "description": "Why, in one sentence, for the concierge." },
                        "priority": { "type": "string", "enum": ["low", "normal", "high", "urgent"] },
                        "team": { "type": "string", "description": "The team that should answer, if you know it." }
                    },
                    "required": ["reason"]
                }),
            });
            specs.push(ToolSpec {
                name: CHOICES_TOOL.to_string(),
                description: format!(
                    "Show the customer a short question with up to {MAX_CHOICES} options to pick from (buttons or a list where the chat app can, numbered text otherwise). Ends your turn."
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "text": { "type": "string", "description": "The question shown above the options." },
                        "options": { "type": "array", "items": { "type": "string" }, "minItems": 1, "maxItems": MAX_CHOICES }
                    },
                    "required": ["text", "options"]
                }),
            });
        }
        specs
    }

    fn run_agent<'a>(
        &'a self,
        agent: &'a str,
        mut messages: Vec<LlmMessage>,
        depth: usize,
        chain: Vec<String>,
        state: &'a mut TurnState<'_>,
    ) -> BoxFuture<'a, Result<Ending, AgentFailure>> {
        async move {
            let def = self
                .agents
                .get(agent)
                .ok_or_else(|| AgentFailure::InvalidToolCall {
                    agent: agent.to_string(),
                    detail: format!("no agent named `{agent}`"),
                })?;
            let hop = Hop {
                agent,
                depth,
                chain: &chain,
            };
            if !def.vision {
                // Its model reads no images: the text around them describes each.
                messages = messages
                    .into_iter()
                    .map(LlmMessage::without_media)
                    .collect();
            }
            let system = self.system_prompt(hop, state)?;
            let tools = self.specs_for(agent, depth, state.input.context.channel.media);
            for round in 0..self.limits.max_tool_rounds {
                let request = LlmRequest {
                    model: def.model.clone(),
                    system: system.clone(),
                    messages: messages.clone(),
                    tools: tools.clone(),
                    temperature: def.temperature,
                    conversation: Some(state.input.identity.conversation.clone()),
                };
                let reply = self.ask_model(&request, state).await?;
                tracing::debug!(
                    agent,
                    round,
                    depth,
                    calls = reply.tool_calls.len(),
                    "LLM answered"
                );
                if reply.tool_calls.is_empty() {
                    return final_answer(agent, reply.text);
                }
                state.tool_calls = within_tool_call_limit(
                    agent,
                    state.tool_calls,
                    reply.tool_calls.len(),
                    self.limits.max_tool_calls_per_turn,
                )?;
                messages.push(LlmMessage::Assistant {
                    text: reply.text.clone(),
                    tool_calls: reply.tool_calls.clone(),
                });
                if let Some(ending) = self
                    .run_tool_calls(hop, &reply, &tools, &mut messages, state)
                    .await?
                {
                    return Ok(ending);
                }
            }
            Err(AgentFailure::Rounds {
                agent: agent.to_string(),
                rounds: self.limits.max_tool_rounds,
            })
        }
        .boxed()
    }

    /// The agent's rendered prompt, with what its place in the turn adds.
    fn system_prompt(&self, hop: Hop<'_>, state: &TurnState<'_>) -> Result<String, AgentFailure> {
        let mut context = state.input.context.clone();
        context.agent = hop.agent.to_string();
        let mut system = self.agents.render(hop.agent, &context)?;
        system.push_str(&prompt_addendum(
            hop,
            state.input.summary.as_deref(),
            state.input.team_note.as_deref(),
        ));
        Ok(system)
    }

    /// One LLM call, counted in the turn's usage; none once the token budget is spent.
    async fn ask_model(
        &self,
        request: &LlmRequest,
        state: &mut TurnState<'_>,
    ) -> Result<LlmReply, AgentFailure> {
        within_budget(state.spent(), self.limits.turn_token_budget, false)?;
        let reply = self.llm.chat(request).await?;
        state.result.llm_calls += 1;
        state.result.input_tokens += reply.input_tokens;
        state.result.output_tokens += reply.output_tokens;
        Ok(reply)
    }

    /// Runs the reply's tool calls in order, each answer going back into `messages`. Once
    /// one ends the turn (a handoff, choices), the rest are answered without being run.
    async fn run_tool_calls(
        &self,
        hop: Hop<'_>,
        reply: &LlmReply,
        tools: &[ToolSpec],
        messages: &mut Vec<LlmMessage>,
        state: &mut TurnState<'_>,
    ) -> Result<Option<Ending>, AgentFailure> {
        let mut ending = None;
        for call in &reply.tool_calls {
            if let Err((outcome, failure)) = vet_tool_call(hop.agent, call, tools) {
                self.metrics.tool_call(outcome.tool, outcome.outcome);
                return Err(failure);
            }
            let content = if ending.is_some() {
                "not run: the turn already ended".to_string()
            } else {
                self.run_tool_call(hop, call, &reply.text, &mut ending, state)
                    .await?
            };
            messages.push(LlmMessage::ToolResult {
                call_id: call.id.clone(),
                content,
            });
        }
        Ok(ending)
    }

    /// One tool call, in its span and counted: what the model reads back. A built-in tool
    /// that ends the turn sets `ending`.
    async fn run_tool_call(
        &self,
        hop: Hop<'_>,
        call: &ToolCall,
        reply_text: &Option<String>,
        ending: &mut Option<Ending>,
        state: &mut TurnState<'_>,
    ) -> Result<String, AgentFailure> {
        let agent = hop.agent;
        let span = tracing::info_span!(
            "tool",
            tool = %call.name,
            agent,
            conversation = %state.input.identity.conversation,
            outcome = tracing::field::Empty,
        );
        let (content, outcome) = match call.name.as_str() {
            HANDOFF_TOOL => {
                let (content, end) = self.handoff(agent, call, reply_text.clone(), state);
                let outcome = if end.is_some() {
                    "ok"
                } else {
                    "invalid_arguments"
                };
                *ending = end;
                (content, outcome)
            }
            CHOICES_TOOL => {
                let (content, end) = self.choices(call);
                let outcome = if end.is_some() {
                    "ok"
                } else {
                    "invalid_arguments"
                };
                *ending = end;
                (content, outcome)
            }
            SEND_MEDIA_TOOL => self.send_media(agent, call, state),
            SHOW_PRODUCTS_TOOL => self.show_products(agent, call, state),
            OPEN_FLOW_TOOL => {
                let (content, outcome, end) = self.open_flow(agent, call, state);
                *ending = end;
                (content, outcome)
            }
            VIEW_CART_TOOL => (cart_view(current_cart(state)), "ok"),
            UPDATE_CART_TOOL => self.update_cart(agent, call, state),
            ASK_TOOL => {
                let asked = self
                    .ask(agent, call, hop.depth, hop.chain, state)
                    .instrument(span.clone())
                    .await;
                match asked {
                    Ok(asked) => asked,
                    Err(failure) => {
                        span.record("outcome", "error");
                        self.metrics.tool_call(ASK_TOOL, "error");
                        return Err(failure);
                    }
                }
            }
            tool => {
                self.call_merchant_tool(agent, tool, call, state)
                    .instrument(span.clone())
                    .await
            }
        };
        span.record("outcome", outcome);
        self.metrics.tool_call(&call.name, outcome);
        Ok(content)
    }

    /// A merchant tool: its answer (masked when `redact_pii`) and outcome; the call and a
    /// clip of the answer go into the notes.
    async fn call_merchant_tool(
        &self,
        agent: &str,
        tool: &str,
        call: &ToolCall,
        state: &mut TurnState<'_>,
    ) -> (String, &'static str) {
        let args = state.redactor.restore_json(&call.arguments);
        let output = self.tools.call(tool, &args, &state.input.identity).await;
        state.note(
            agent,
            format!(
                "called {tool} {} → {}: {}",
                args,
                if output.is_ok() { "ok" } else { "error" },
                clip_text(&output.content, 500)
            ),
        );
        let outcome = output.outcome.name();
        if output.is_ok()
            && let Some(payment) = payment_in(&output.content)
        {
            state.payment = Some(payment);
        }
        state.tool_outputs.push(output.content.clone());
        let content = if state.input.redact_pii {
            state.redactor.mask(&output.content)
        } else {
            output.content
        };
        (content, outcome)
    }

    fn handoff(
        &self,
        agent: &str,
        call: &ToolCall,
        text: Option<String>,
        state: &mut TurnState<'_>,
    ) -> (String, Option<Ending>) {
        let Some(reason) = string_arg(&call.arguments, "reason") else {
            return (json!({ "error": "`reason` is required" }).to_string(), None);
        };
        state.note(
            agent,
            format!("handed the conversation to a human: {reason}"),
        );
        state.result.handoff = Some(HandoffRequest {
            reason,
            priority: string_arg(&call.arguments, "priority"),
            team: string_arg(&call.arguments, "team"),
            requested_by: agent.to_string(),
        });
        (
            json!({ "ok": true }).to_string(),
            Some(Ending::Handoff { text }),
        )
    }

    /// `send_media`: a URL a merchant tool returned in this turn (or on an allowed host) is
    /// queued to go to the customer; anything else is refused, and the model told why.
    fn send_media(
        &self,
        agent: &str,
        call: &ToolCall,
        state: &mut TurnState<'_>,
    ) -> (String, &'static str) {
        let refuse = |why: String| (json!({ "error": why }).to_string(), "refused");
        let Some(url) = string_arg(&call.arguments, "url") else {
            return (
                json!({ "error": "`url` is required" }).to_string(),
                "invalid_arguments",
            );
        };
        let sent = state
            .result
            .replies
            .iter()
            .filter(|r| matches!(r, AgentReply::Media { .. }))
            .count();
        if sent >= MAX_MEDIA_PER_TURN {
            return refuse(format!(
                "at most {MAX_MEDIA_PER_TURN} pictures or files a turn"
            ));
        }
        if let Err(why) = sendable(&url, &state.tool_outputs, &self.media_hosts) {
            state.note(
                agent,
                format!("send_media refused {}: {why}", clip_text(&url, 200)),
            );
            return refuse(why.to_string());
        }
        let caption = string_arg(&call.arguments, "caption")
            .map(|c| clip_text(&state.redactor.restore_for_customer(&c), 1000));
        state.note(agent, format!("sent {}", clip_text(&url, 200)));
        queued(
            state,
            AgentReply::Media { url, caption },
            "it goes to the customer with your answer",
        )
    }

    /// `show_products`: the products a merchant tool described in this turn, by their ids,
    /// queued to go to the customer as the tool described them; an id no tool answered is
    /// refused, and the model told which.
    fn show_products(
        &self,
        agent: &str,
        call: &ToolCall,
        state: &mut TurnState<'_>,
    ) -> (String, &'static str) {
        let invalid = |why: String| (json!({ "error": why }).to_string(), "invalid_arguments");
        let ids: Vec<String> = call
            .arguments
            .get("products")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let Some(text) = string_arg(&call.arguments, "text") else {
            return invalid("`text` is required".to_string());
        };
        if ids.is_empty() || ids.len() > Product::MAX_PER_MESSAGE {
            return invalid(format!(
                "`products` holds 1 to {} ids",
                Product::MAX_PER_MESSAGE
            ));
        }
        let known = products_in(&state.tool_outputs);
        let mut products: Vec<Product> = Vec::new();
        for id in &ids {
            match known.get(id) {
                Some(product) if !products.iter().any(|p| &p.id == id) => {
                    products.push(product.clone())
                }
                Some(_) => {}
                None => {
                    state.note(
                        agent,
                        format!(
                            "show_products refused {}: no tool described it in this turn",
                            clip_text(id, 100)
                        ),
                    );
                    return invalid(format!(
                        "no tool described a product `{}` in this turn: only those can be shown; look it up first",
                        clip_text(id, 100)
                    ));
                }
            }
        }
        let text = clip_text(&state.redactor.restore_for_customer(&text), 1000);
        let lines: Vec<String> = products.iter().map(Product::line).collect();
        state.note(agent, format!("showed {}", lines.join(" | ")));
        queued(
            state,
            AgentReply::Products { text, products },
            "they go to the customer before your answer",
        )
    }

    /// `open_flow`: the form goes to the customer with a fresh token where the chat app has
    /// forms (WhatsApp's Cloud API), and ends the turn; elsewhere the model is told to ask
    /// its questions itself.
    fn open_flow(
        &self,
        agent: &str,
        call: &ToolCall,
        state: &mut TurnState<'_>,
    ) -> (String, &'static str, Option<Ending>) {
        let (Some(name), Some(text)) = (
            string_arg(&call.arguments, "flow"),
            string_arg(&call.arguments, "text"),
        ) else {
            return (
                json!({ "error": "`flow` and `text` are required" }).to_string(),
                "invalid_arguments",
                None,
            );
        };
        let Some(flow) = self.flows.iter().find(|f| f.name == name).cloned() else {
            return (
                json!({ "error": format!("no form named `{}`", clip_text(&name, 64)) }).to_string(),
                "invalid_arguments",
                None,
            );
        };
        if state.input.context.channel.kind != "whatsapp" {
            return (
                json!({ "ok": false, "note": format!("This chat app has no forms: ask the customer yourself, one question at a time, for what the form asks: {}", flow.description) }).to_string(),
                "ok",
                None,
            );
        }
        let data = call
            .arguments
            .get("data")
            .filter(|d| d.is_object() && d.to_string().len() <= 2048)
            .map(|d| state.redactor.restore_json(d));
        let token = format!("flow-{}", uuid::Uuid::new_v4().simple());
        state.note(agent, format!("sent the form {}", flow.name));
        state.result.flows.push((token.clone(), flow.name.clone()));
        state.result.replies.push(AgentReply::Flow {
            text: clip_text(&state.redactor.restore_for_customer(&text), 1000),
            flow,
            token,
            data,
        });
        (json!({ "ok": true }).to_string(), "ok", Some(Ending::Sent))
    }

    /// `update_cart`: a product in the cart or described by a tool this turn, to a quantity.
    fn update_cart(
        &self,
        agent: &str,
        call: &ToolCall,
        state: &mut TurnState<'_>,
    ) -> (String, &'static str) {
        let invalid = |why: String| (json!({ "error": why }).to_string(), "invalid_arguments");
        let (Some(id), Some(quantity)) = (
            string_arg(&call.arguments, "product"),
            call.arguments.get("quantity").and_then(Value::as_u64),
        ) else {
            return invalid("`product` and `quantity` (0 to 99) are required".to_string());
        };
        let quantity = u32::try_from(quantity.min(99)).unwrap_or(99);
        let mut cart = current_cart(state).to_vec();
        let product = cart
            .iter()
            .map(|l| l.product.clone())
            .find(|p| p.id == id)
            .or_else(|| products_in(&state.tool_outputs).remove(&id));
        let Some(product) = product else {
            return invalid(format!(
                "`{}` is neither in the cart nor described by a tool in this turn; look it up first",
                clip_text(&id, 100)
            ));
        };
        let full = cart.len() >= MAX_CART_LINES;
        match cart.iter_mut().find(|l| l.product.id == id) {
            Some(line) => line.quantity = quantity,
            None if full => {
                return (
                    json!({ "error": "the cart is full" }).to_string(),
                    "refused",
                );
            }
            None => cart.push(CartLine {
                product: product.clone(),
                quantity,
            }),
        }
        cart.retain(|l| l.quantity > 0);
        state.note(
            agent,
            format!("set the cart's {} to {quantity}", product.line()),
        );
        let view = cart_view(&cart);
        state.result.cart = Some(cart);
        (view, "ok")
    }

    fn choices(&self, call: &ToolCall) -> (String, Option<Ending>) {
        let text = string_arg(&call.arguments, "text");
        let options: Vec<String> = call
            .arguments
            .get("options")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|o| match o {
                        Value::String(s) => Some(s.trim().to_string()),
                        Value::Object(o) => o
                            .get("title")
                            .and_then(Value::as_str)
                            .map(|s| s.trim().to_string()),
                        _ => None,
                    })
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        match text {
            Some(text) if !options.is_empty() && options.len() <= MAX_CHOICES => (
                json!({ "ok": true }).to_string(),
                Some(Ending::Choices { text, options }),
            ),
            _ => (
                json!({ "error": format!("`text` and 1 to {MAX_CHOICES} `options` are required") })
                    .to_string(),
                None,
            ),
        }
    }

    /// `ask_agent`: the colleague's answer, or an error the asking agent can read, with the
    /// call's outcome (ok, invalid_arguments, refused) for the tool metrics.
    async fn ask(
        &self,
        asker: &str,
        call: &ToolCall,
        depth: usize,
        chain: &[String],
        state: &mut TurnState<'_>,
    ) -> Result<(String, &'static str), AgentFailure> {
        let (Some(target), Some(question)) = (
            string_arg(&call.arguments, "agent"),
            string_arg(&call.arguments, "question"),
        ) else {
            return Ok((
                json!({ "error": "`agent` and `question` are required" }).to_string(),
                "invalid_arguments",
            ));
        };
        let allowed = self
            .agents
            .get(asker)
            .is_some_and(|d| d.ask.iter().any(|a| a == &target));
        if !allowed {
            return Ok((
                json!({ "error": format!("you cannot ask `{target}`") }).to_string(),
                "refused",
            ));
        }
        let mut path = chain.to_vec();
        path.push(target.clone());
        let route = path.join(" → ");
        if chain.iter().any(|a| a == &target) {
            state.note(
                "gateway",
                format!("{asker} asked {target}, stopped: a cycle ({route}). Question: {question}"),
            );
            return Ok((
                json!({ "error": format!("`{target}` is already working on this request ({route}); answer with what you know") }).to_string(),
                "refused",
            ));
        }
        if depth + 1 > self.limits.max_ask_depth {
            state.note(
                "gateway",
                format!(
                    "{asker} asked {target}, stopped: deeper than {} ({route}). Question: {question}",
                    self.limits.max_ask_depth
                ),
            );
            return Ok((
                json!({ "error": format!("cannot ask `{target}` now: too many colleagues are already involved; answer with what you know") }).to_string(),
                "refused",
            ));
        }
        state.note(asker, format!("asked {target}: {question}"));
        let ended = self
            .run_agent(
                &target,
                vec![LlmMessage::User(question)],
                depth + 1,
                path,
                state,
            )
            .await?;
        let answer = match ended {
            Ending::Text(text) => text,
            Ending::Choices { text, .. } | Ending::Handoff { text: Some(text) } => text,
            Ending::Handoff { text: None } => String::new(),
            Ending::Sent => "(I sent the customer a form.)".to_string(),
        };
        state.note(&target, format!("answered {asker}: {answer}"));
        Ok((answer, "ok"))
    }
}

/// The instructions for the LLM part of a handoff brief.
const BRIEF_PROMPT: &str = "A customer service chat is being handed to a human colleague. Write their brief as one JSON object and nothing else, with these keys: \"summary\" (at most 80 words: who the customer is, what happened, what is still open), \"intent\" (what the customer wants, in a few words), \"mood\" (one or two words, like calm, impatient, upset), \"suggested_replies\" (two or three short first replies the colleague could send, in the customer's language, friendly, consistent with the facts found; never promise what was not checked). Write the summary in English.";

/// The LLM's part of a handoff brief.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct BriefDraft {
    pub summary: Option<String>,
    pub intent: Option<String>,
    pub mood: Option<String>,
    pub suggested_replies: Vec<String>,
}

/// The instructions for folding older messages into the rolling summary.
const SUMMARY_PROMPT: &str = "You keep the running summary of a customer service chat for the colleagues who will continue it. Rewrite the summary so that it also covers the new messages: who the customer is, what they asked, order numbers and products mentioned, what was checked or promised, and what is still open. At most 150 words, plain sentences, in the customer's language. Answer with the summary only.";

impl AgentRuntime {
    /// Folds `transcript` (older messages, one per line) into the previous summary.
    pub async fn summarize(
        &self,
        conversation: &ConversationId,
        previous: Option<&str>,
        transcript: &str,
    ) -> Result<(String, u64, u64), LlmError> {
        let mut text = String::new();
        if let Some(previous) = previous {
            text.push_str("Summary so far:\n");
            text.push_str(previous);
            text.push_str("\n\n");
        }
        text.push_str("New messages:\n");
        text.push_str(transcript);
        let reply = self
            .llm
            .chat(&LlmRequest {
                model: None,
                system: SUMMARY_PROMPT.to_string(),
                messages: vec![LlmMessage::User(text)],
                tools: Vec::new(),
                temperature: Some(0.0),
                conversation: Some(conversation.clone()),
            })
            .await?;
        let summary = reply
            .text
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| LlmError::Malformed("an empty summary".to_string()))?;
        Ok((summary, reply.input_tokens, reply.output_tokens))
    }

    /// The LLM's part of a handoff brief, from the transcript and what the agents tried.
    pub async fn brief(
        &self,
        conversation: &ConversationId,
        reason: &str,
        transcript: &str,
        tried: &str,
    ) -> Result<(BriefDraft, u64, u64), LlmError> {
        let text = format!(
            "Reason for the handoff: {reason}\n\nConversation:\n{transcript}\n\nWhat the assistants looked up:\n{}",
            if tried.is_empty() { "(nothing)" } else { tried }
        );
        let reply = self
            .llm
            .chat(&LlmRequest {
                model: None,
                system: BRIEF_PROMPT.to_string(),
                messages: vec![LlmMessage::User(text)],
                tools: Vec::new(),
                temperature: Some(0.0),
                conversation: Some(conversation.clone()),
            })
            .await?;
        let body = reply.text.unwrap_or_default();
        // Models wrap JSON in prose or code fences now and then: take the outermost object.
        let json = match (body.find('{'), body.rfind('}')) {
            (Some(start), Some(end)) if end > start => &body[start..=end],
            _ => {
                return Err(LlmError::Malformed(
                    "the brief is not a JSON object".to_string(),
                ));
            }
        };
        let mut draft: BriefDraft = serde_json::from_str(json)
            .map_err(|e| LlmError::Malformed(format!("the brief: {e}")))?;
        draft.suggested_replies.retain(|r| !r.trim().is_empty());
        draft.suggested_replies.truncate(3);
        Ok((draft, reply.input_tokens, reply.output_tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop<'a>(depth: usize, chain: &'a [String]) -> Hop<'a> {
        Hop {
            agent: "front_desk",
            depth,
            chain,
        }
    }

    #[test]
    fn send_media_takes_a_tools_url_or_an_allowed_https_host_only() {
        let outputs = vec![r#"{"image":"http://shop.test/images/fig.png?v=2"}"#.to_string()];
        let hosts = vec!["cdn.shop.example".to_string()];
        let ok = |url: &str| sendable(url, &outputs, &hosts).is_ok();
        assert!(
            ok("http://shop.test/images/fig.png?v=2"),
            "as a tool answered it"
        );
        assert!(ok("https://cdn.shop.example/any.jpg"));
        assert!(ok("https://CDN.shop.example/any.jpg"));
        for refused in [
            "http://shop.test/images/other.png",
            "http://cdn.shop.example/any.jpg",
            "https://cdn.shop.example.evil.test/any.jpg",
            "https://user:pw@cdn.shop.example/any.jpg",
            "ftp://cdn.shop.example/any.jpg",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "not a url",
        ] {
            assert!(!ok(refused), "{refused}");
        }
    }

    #[test]
    fn the_entry_agent_reads_the_summary_and_the_concierges_note() {
        let chain = ["front_desk".to_string()];
        assert_eq!(prompt_addendum(hop(0, &chain), None, None), "");
        let text = prompt_addendum(
            hop(0, &chain),
            Some("asked about order 7"),
            Some("refunded"),
        );
        assert!(
            text.starts_with("\n\nSummary of the earlier conversation:\nasked about order 7\n\n")
        );
        assert!(text.ends_with("continue from there:\nrefunded"));
    }

    #[test]
    fn a_colleague_is_told_who_asks_and_not_the_summary() {
        let chain = ["front_desk".to_string(), "orders".to_string()];
        let text = prompt_addendum(hop(1, &chain), Some("secret"), Some("note"));
        assert!(text.starts_with("\n\nA colleague (front_desk) is asking you this"));
        assert!(!text.contains("secret") && !text.contains("note"));
    }

    #[test]
    fn the_budget_stops_a_call_at_the_limit_and_an_answer_past_it() {
        assert!(within_budget(99, 100, false).is_ok());
        assert!(matches!(
            within_budget(100, 100, false),
            Err(AgentFailure::Budget {
                spent: 100,
                budget: 100
            })
        ));
        assert!(within_budget(100, 100, true).is_ok());
        assert!(within_budget(101, 100, true).is_err());
    }

    #[test]
    fn an_empty_answer_fails_and_the_tool_call_limit_counts_the_whole_reply() {
        assert!(matches!(final_answer("a", Some("hi".into())), Ok(Ending::Text(t)) if t == "hi"));
        assert!(matches!(
            final_answer("a", None),
            Err(AgentFailure::Empty { .. })
        ));
        assert_eq!(within_tool_call_limit("a", 2, 2, 4).unwrap(), 4);
        assert!(matches!(
            within_tool_call_limit("a", 2, 3, 4),
            Err(AgentFailure::ToolCalls {
                asked: 5,
                limit: 4,
                ..
            })
        ));
    }

    #[test]
    fn only_given_tools_with_object_arguments_are_run() {
        let tools = [ToolSpec {
            name: "order_status".into(),
            description: String::new(),
            parameters: json!({}),
        }];
        let call = |name: &str, arguments: Value| ToolCall {
            id: "1".into(),
            name: name.into(),
            arguments,
        };
        assert!(vet_tool_call("a", &call("order_status", json!({ "id": 1 })), &tools).is_ok());
        assert!(vet_tool_call("a", &call("order_status", Value::Null), &tools).is_ok());
        let unknown = call("drop_tables", json!({}));
        let (refused, _) = vet_tool_call("a", &unknown, &tools).unwrap_err();
        assert_eq!(
            refused,
            Refused {
                tool: "unknown",
                outcome: "unknown_tool"
            }
        );
        let listed = call("order_status", json!([1]));
        let (refused, failure) = vet_tool_call("a", &listed, &tools).unwrap_err();
        assert_eq!(
            refused,
            Refused {
                tool: "order_status",
                outcome: "invalid_arguments"
            }
        );
        assert_eq!(
            failure.to_string(),
            "agent `a` made an invalid tool call: the arguments of `order_status` are not a JSON object"
        );
    }
}
