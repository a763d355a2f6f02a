//! The head this process last gave each terminal's chain — appended, or still queued for commit —
//! behind the lock under which this process chains that terminal's receipts one at a time. Only
//! a hint: an append moves the head in the database only from the previous head it names, and a
//! terminal without a hint is chained under the head's row lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use fiscus_domain::TerminalId;

pub use crate::store::Head;

/// One terminal's hint, and the lock its receipts are chained under.
pub type Slot = Arc<tokio::sync::Mutex<Option<Head>>>;

/// How many terminals are remembered before those no request is using are forgotten.
const REMEMBERED: usize = 10_000;

pub struct Heads(Mutex<Slots>);

struct Slots {
    map: HashMap<TerminalId, Slot>,
    /// The size at which the unused slots are next forgotten: at least twice what a sweep left,
    /// so each sweep is paid for by as many new terminals as it kept.
    sweep_at: usize,
}

impl Default for Heads {
    fn default() -> Self {
        Self(Mutex::new(Slots {
            map: HashMap::new(),
            sweep_at: REMEMBERED,
        }))
    }
}

impl Heads {
    pub fn slot(&self, terminal: &TerminalId) -> Slot {
        let mut slots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.map.get(terminal) {
            return slot.clone();
        }
        if slots.map.len() >= slots.sweep_at {
            // A slot only the map holds has no request chaining on it: forgetting it costs the
            // terminal's next sale one append under the row lock.
            slots.map.retain(|_, slot| Arc::strong_count(slot) > 1);
            slots.sweep_at = REMEMBERED.max(2 * slots.map.len());
        }
        slots.map.entry(terminal.clone()).or_default().clone()
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.0.lock().unwrap().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminal(n: usize) -> TerminalId {
        TerminalId::of("37900846788", "001", &n.to_string())
    }

    #[test]
    fn a_terminal_keeps_its_slot_while_it_is_remembered() {
        let heads = Heads::default();
        let slot = heads.slot(&terminal(1));
        assert!(Arc::ptr_eq(&slot, &heads.slot(&terminal(1))));
        assert!(!Arc::ptr_eq(&slot, &heads.slot(&terminal(2))));
    }

    #[test]
    fn unused_slots_are_forgotten_past_the_bound_and_slots_in_use_never() {
        let heads = Heads::default();
        let held = heads.slot(&terminal(0));
        for n in 1..REMEMBERED {
            heads.slot(&terminal(n));
        }
        assert_eq!(heads.remembered(), REMEMBERED);
        heads.slot(&terminal(REMEMBERED));
        assert_eq!(heads.remembered(), 2, "the held slot and the new one");
        assert!(Arc::ptr_eq(&held, &heads.slot(&terminal(0))));
    }
}
