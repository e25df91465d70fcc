//! A handoff's priority: how soon a person should take the thread.

/// Lowest first, so the derived order ranks them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
    ];

    /// The name as the store, the API and the model's `handoff_to_human` call write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    /// A written priority, case ignored; `None` for anything else.
    pub fn parse(text: &str) -> Option<Priority> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// A stored priority: one that is missing or unknown counts as normal.
    pub fn of(stored: Option<&str>) -> Priority {
        stored.and_then(Priority::parse).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_rank_and_read_back() {
        assert!(Priority::Urgent > Priority::High && Priority::High > Priority::Normal);
        assert!(Priority::Normal > Priority::Low);
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::parse(" URGENT"), Some(Priority::Urgent));
        assert_eq!(Priority::parse("asap"), None);
        assert_eq!(Priority::of(None), Priority::Normal);
        assert_eq!(Priority::of(Some("asap")), Priority::Normal);
    }
}
