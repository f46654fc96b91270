//! The loss check: every acknowledged message must reach its recipient exactly
//! once, in `seq` order per conversation.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

/// Messages acknowledged to senders, and what recipients received.
#[derive(Default)]
pub struct LossCheck {
    /// (conversation, seq) of every acknowledged message.
    acked: HashSet<(String, i64)>,
    /// (conversation, seq) -> how many times its recipient received it.
    received: HashMap<(String, i64), u32>,
    /// Highest seq each recipient has seen per conversation (order check).
    last_seen: HashMap<(String, String), i64>,
    out_of_order: u64,
}

/// What the loss check found.
#[derive(Debug, PartialEq, Eq)]
pub struct LossReport {
    pub acked: u64,
    pub delivered_once: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl LossReport {
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.out_of_order == 0
    }

    pub fn to_json(&self) -> Value {
        json!({
            "acked": self.acked, "delivered_once": self.delivered_once, "missing": self.missing,
            "duplicates": self.duplicates, "out_of_order": self.out_of_order, "ok": self.ok(),
        })
    }
}

impl LossCheck {
    pub fn acked(&mut self, conversation: &str, seq: i64) {
        self.acked.insert((conversation.to_owned(), seq));
    }

    pub fn received(&mut self, recipient: &str, conversation: &str, seq: i64) {
        *self
            .received
            .entry((conversation.to_owned(), seq))
            .or_default() += 1;
        let last = self
            .last_seen
            .entry((recipient.to_owned(), conversation.to_owned()))
            .or_insert(0);
        if seq < *last {
            self.out_of_order += 1;
        }
        *last = (*last).max(seq);
    }

    pub fn report(&self) -> LossReport {
        let missing = self
            .acked
            .iter()
            .filter(|k| !self.received.contains_key(*k))
            .count() as u64;
        let delivered_once = self
            .acked
            .iter()
            .filter(|k| self.received.get(*k) == Some(&1))
            .count() as u64;
        let duplicates = self.received.values().filter(|n| **n > 1).count() as u64;
        LossReport {
            acked: self.acked.len() as u64,
            delivered_once,
            missing,
            duplicates,
            out_of_order: self.out_of_order,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_passes() {
        let mut c = LossCheck::default();
        for seq in 1..=3 {
            c.acked("c1", seq);
            c.received("bob", "c1", seq);
        }
        let r = c.report();
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.delivered_once, 3);
    }

    #[test]
    fn missing_duplicated_and_reordered_messages_are_caught() {
        let mut c = LossCheck::default();
        for seq in 1..=4 {
            c.acked("c1", seq);
        }
        c.received("bob", "c1", 1);
        c.received("bob", "c1", 3);
        c.received("bob", "c1", 2); // out of order
        c.received("bob", "c1", 3); // duplicate
        let r = c.report();
        assert_eq!((r.missing, r.duplicates, r.out_of_order), (1, 1, 1));
        assert!(!r.ok());
    }
}
