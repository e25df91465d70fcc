//! The tag a send carries so the platform's status reports can name our reply: proof that a
//! reply was accepted when the answer to the send itself was lost.
//!
//! A reply may go out as several platform messages (a long text, media then text); each part
//! carries `cm=<message id>;p=<part>/<parts>`, and only a status for the last part vouches
//! for the whole reply (parts are sent one after the other, each only once the one before
//! was accepted).

use concierge_domain::MessageId;

const PREFIX: &str = "cm=";

/// The tag of part `part` (1-based) of `parts` of the reply `message`.
pub fn encode(message: MessageId, part: usize, parts: usize) -> String {
    format!("{PREFIX}{message};p={part}/{parts}")
}

/// The reply a tag vouches for: `Some` only for a tag of ours naming the reply's last part.
pub fn decode(tag: &str) -> Option<MessageId> {
    let rest = tag.strip_prefix(PREFIX)?;
    let (id, part) = rest.split_once(";p=")?;
    let (part, parts) = part.split_once('/')?;
    let (part, parts) = (part.parse::<usize>().ok()?, parts.parse::<usize>().ok()?);
    if part == 0 || part != parts {
        return None;
    }
    MessageId::parse(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_part_vouches_for_the_reply() {
        let id = MessageId::new();
        assert_eq!(decode(&encode(id, 1, 1)), Some(id));
        assert_eq!(decode(&encode(id, 2, 2)), Some(id));
        assert_eq!(decode(&encode(id, 1, 2)), None);
    }

    #[test]
    fn tags_that_are_not_ours_name_nothing() {
        for tag in [
            "",
            "conv=fake-conv-0001",
            "cm=not-a-uuid;p=1/1",
            "cm=0190b1a2-0000-7000-8000-000000000000;p=0/0",
            "cm=0190b1a2-0000-7000-8000-000000000000;p=1/x",
            "cm=0190b1a2-0000-7000-8000-000000000000",
        ] {
            assert_eq!(decode(tag), None, "{tag}");
        }
    }
}
