//! A value that takes effect from part N on: a recipe's (or a promoted version's) model and preprocessor. The
//! orchestrator sends `(first part, value)` over a channel; each worker asks [`Pending::due`] before each part and
//! applies what is due, so a switch never leaves a part half-judged.

use std::collections::VecDeque;
use std::sync::mpsc::Receiver;

use super::Seq;

/// A worker's end: what to apply, from which part on.
pub struct Pending<T> {
    rx: Receiver<(Seq, T)>,
    queued: VecDeque<(Seq, T)>,
}

impl<T> Pending<T> {
    pub fn new(rx: Receiver<(Seq, T)>) -> Self {
        Pending {
            rx,
            queued: VecDeque::new(),
        }
    }

    /// The newest switch due at part `seq`, if any (called by the worker before each part).
    pub fn due(&mut self, seq: Seq) -> Option<T> {
        self.queued.extend(self.rx.try_iter());
        let mut due = None;
        while self.queued.front().is_some_and(|(from, _)| *from <= seq) {
            due = self.queued.pop_front().map(|(_, t)| t);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_applies_from_its_part_on_and_the_newest_due_wins() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut pending = Pending::new(rx);
        tx.send((3, "b")).unwrap();
        tx.send((3, "c")).unwrap();
        tx.send((5, "d")).unwrap();
        assert_eq!(pending.due(2), None);
        assert_eq!(pending.due(3), Some("c"));
        assert_eq!(pending.due(4), None);
        assert_eq!(pending.due(7), Some("d"));
    }
}
