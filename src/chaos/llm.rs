//! The chaos run's LLM: a fake OpenAI-compatible provider whose reply names every customer
//! message of the turn (the `msg#N` tokens after the last assistant message), so each reply
//! the platform receives says which messages it answers. Summary and brief requests get a
//! plain sentence. It answers after a random 0..`max_latency`, so kills land mid-turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};

use crate::bench::BenchError;

/// The token of message `i`.
pub fn token(i: usize) -> String {
    format!("msg#{i}")
}

/// The message numbers named in `text`, in order.
pub fn tokens(text: &str) -> Vec<usize> {
    text.split("msg#")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

pub struct Llm {
    max_latency: Duration,
    calls: AtomicU64,
}

impl Llm {
    pub async fn start(max_latency: Duration) -> Result<(Arc<Llm>, String), BenchError> {
        let llm = Arc::new(Llm {
            max_latency,
            calls: AtomicU64::new(0),
        });
        let url = crate::bench::serve(
            axum::Router::new()
                .fallback(handler)
                .with_state(llm.clone()),
        )
        .await?;
        Ok((llm, url))
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The tokens of the user messages after the last assistant message.
fn new_tokens(request: &Value) -> Vec<usize> {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let start = messages
        .iter()
        .rposition(|m| m["role"] == "assistant")
        .map_or(0, |i| i + 1);
    messages[start..]
        .iter()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| tokens(&content_text(&m["content"])))
        .collect()
}

async fn handler(State(llm): State<Arc<Llm>>, request: Request) -> Response {
    let body = axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&body).unwrap_or_default();
    let n = llm.calls.fetch_add(1, Ordering::Relaxed) + 1;
    let max = u64::try_from(llm.max_latency.as_millis()).unwrap_or(0);
    if max > 0 {
        let wait = rand::rng().random_range(0..=max);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    let system = json["messages"][0]["content"].as_str().unwrap_or_default();
    let content = if system.starts_with("You keep the running summary")
        || system.starts_with("A customer service chat is being handed")
    {
        "The customer sent numbered test messages.".to_string()
    } else {
        let answered: Vec<String> = new_tokens(&json).into_iter().map(token).collect();
        format!("ack {}", answered.join(" "))
    };
    axum::Json(json!({
        "id": format!("chatcmpl-{n}"), "object": "chat.completion", "created": 0,
        "model": json["model"].as_str().unwrap_or("chaos"),
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content },
                      "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110 }
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_back_in_order() {
        assert_eq!(tokens("ack msg#3 msg#14 msg#15"), vec![3, 14, 15]);
        assert_eq!(tokens("nothing here, msg# or msg#x"), Vec::<usize>::new());
    }

    #[test]
    fn only_the_turns_new_messages_are_answered() {
        let request = json!({"messages": [
            {"role": "system", "content": "You are the concierge."},
            {"role": "user", "content": "msg#1"},
            {"role": "assistant", "content": "ack msg#1"},
            {"role": "user", "content": "msg#2"},
            {"role": "user", "content": [{"type": "text", "text": "msg#5"}]},
        ]});
        assert_eq!(new_tokens(&request), vec![2, 5]);
    }
}
