//! What the chaos run's LLM answers (the fake LLM's fallback there): a reply that names
//! every customer message of the turn (the `msg#N` tokens after the last assistant message),
//! so each reply the platform receives says which messages it answers.

use serde_json::Value;

use crate::llm::content_text;

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

/// The chaos run's answer: the tokens of the turn's new messages (`ack msg#3 msg#4`); a
/// summary or a handoff brief gets a plain sentence.
pub fn answer(request: &Value) -> String {
    let system = request["messages"][0]["content"]
        .as_str()
        .unwrap_or_default();
    if system.starts_with("You keep the running summary")
        || system.starts_with("A customer service chat is being handed")
    {
        "The customer sent numbered test messages.".to_string()
    } else {
        let answered: Vec<String> = new_tokens(request).into_iter().map(token).collect();
        format!("ack {}", answered.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
