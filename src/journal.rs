//! What happened: every fault that fired, kept in memory for tests and the shutdown report.

use crate::fault::Firing;
use std::collections::VecDeque;

/// Firings kept; older ones are dropped so a long run cannot grow memory without bound.
const KEPT: usize = 100_000;

#[derive(Debug, Default)]
pub struct Journal {
    firings: VecDeque<Firing>,
}

impl Journal {
    pub fn record(&mut self, firing: Firing) {
        if self.firings.len() == KEPT {
            self.firings.pop_front();
        }
        self.firings.push_back(firing);
    }

    /// Oldest first.
    pub fn firings(&self) -> Vec<Firing> {
        self.firings.iter().cloned().collect()
    }
}
