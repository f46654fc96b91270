//! The loss check: every acknowledged message must reach each of its
//! recipients (the other participant of a pair, every other member of a
//! thread) exactly once, in `seq` order per conversation.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

/// Messages acknowledged to senders, and what recipients received.
pub struct LossCheck {
    /// How many recipients each message has.
    recipients_per_message: usize,
    /// (conversation, seq) of every acknowledged message.
    acked: HashSet<(String, i64)>,
    /// (conversation, seq) -> how many times each recipient received it.
    received: HashMap<(String, i64), HashMap<String, u32>>,
    /// Highest seq each recipient has seen per conversation (order check).
    last_seen: HashMap<(String, String), i64>,
    out_of_order: u64,
}

impl Default for LossCheck {
    /// One recipient per message (a pair).
    fn default() -> Self {
        Self::with_recipients(1)
    }
}

/// What the loss check found (`missing` and `delivered_once` count
/// deliveries: a message to five recipients is five).
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
    /// A check where each message must reach `n` recipients.
    pub fn with_recipients(n: usize) -> Self {
        Self {
            recipients_per_message: n,
            acked: HashSet::new(),
            received: HashMap::new(),
            last_seen: HashMap::new(),
            out_of_order: 0,
        }
    }

    pub fn acked(&mut self, conversation: &str, seq: i64) {
        self.acked.insert((conversation.to_owned(), seq));
    }

    pub fn received(&mut self, recipient: &str, conversation: &str, seq: i64) {
        *self
            .received
            .entry((conversation.to_owned(), seq))
            .or_default()
            .entry(recipient.to_owned())
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
        let expected = self.recipients_per_message as u64;
        let (mut missing, mut delivered_once) = (0, 0);
        for key in &self.acked {
            let by_recipient = self.received.get(key);
            let reached = by_recipient.map_or(0, |r| r.len() as u64);
            missing += expected.saturating_sub(reached);
            delivered_once +=
                by_recipient.map_or(0, |r| r.values().filter(|n| **n == 1).count()) as u64;
        }
        let duplicates = self
            .received
            .values()
            .flat_map(HashMap::values)
            .filter(|n| **n > 1)
            .count() as u64;
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

    #[test]
    fn every_member_of_a_thread_must_receive_each_message() {
        let mut c = LossCheck::with_recipients(3);
        c.acked("t1", 1);
        for member in ["b", "c", "d"] {
            c.received(member, "t1", 1);
        }
        c.acked("t1", 2);
        c.received("b", "t1", 2);
        c.received("b", "t1", 2);
        let r = c.report();
        assert_eq!((r.delivered_once, r.missing, r.duplicates), (3, 2, 1));
    }
}
