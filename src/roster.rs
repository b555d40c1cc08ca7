//! Which worker ran which updaters, as the report, the history and the TUI's lanes show it. A
//! leaf: those who only display a crew need not know how one works.

use serde::Serialize;

/// Which worker ran which updaters, for the report and the TUI's lanes.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerShare {
    /// `w1`, `w2`, … in the order the workers joined.
    pub worker: String,
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// The first and last updater it ran, 1-based as shown everywhere; `null` when there were
    /// more workers than updaters.
    pub first_updater: Option<u32>,
    pub last_updater: Option<u32>,
    /// Set when the worker vanished (or left) before its share was done: why, and what became
    /// unknown. What it had not reported is unknown.
    pub vanished: Option<String>,
    /// It left on its own (interrupted, its lease lapsed, a job it could not read) rather than
    /// vanishing without a word.
    pub left: bool,
}

impl WorkerShare {
    /// The updaters it ran, 0-based.
    fn updaters(&self) -> std::ops::Range<u32> {
        match (self.first_updater, self.last_updater) {
            (Some(first), Some(last)) => first - 1..last,
            _ => 0..0,
        }
    }

    /// Whether updater `updater` (0-based) ran in this worker.
    pub fn runs(&self, updater: u32) -> bool {
        self.updaters().contains(&updater)
    }

    /// `#1–#7`, `#7` or `no updaters`.
    pub fn range(&self) -> String {
        updater_range(self.updaters())
    }

    /// `w1 · 4f1c9a2e on build-7 (pid 4242) · updaters #1–#7`, and why it vanished if it did.
    pub fn describe(&self) -> String {
        let updaters = updaters_label(self.updaters());
        let how = if self.left { "left" } else { "vanished" };
        let vanished = self
            .vanished
            .as_ref()
            .map_or_else(String::new, |why| format!(" · {how}: {why}"));
        format!(
            "{} · {} on {} (pid {}) · {updaters}{vanished}",
            self.worker, self.id, self.host, self.pid
        )
    }
}

/// Updaters `updaters` (0-based) as shown: `#1–#7`, `#7`, or `no updaters`.
pub(crate) fn updater_range(updaters: std::ops::Range<u32>) -> String {
    match updaters.len() {
        0 => "no updaters".to_owned(),
        1 => format!("#{}", updaters.end),
        _ => format!("#{}–#{}", updaters.start + 1, updaters.end),
    }
}

/// `updaters #1–#7`, `updater #7`, or `no updaters`.
pub(crate) fn updaters_label(updaters: std::ops::Range<u32>) -> String {
    match updaters.len() {
        0 => "no updaters".to_owned(),
        1 => format!("updater {}", updater_range(updaters)),
        _ => format!("updaters {}", updater_range(updaters)),
    }
}

/// The worker (`w2`) that ran updater `updater` (0-based), if workers ran the run.
pub fn worker_of(shares: &[WorkerShare], updater: u32) -> Option<&str> {
    shares
        .iter()
        .find(|s| s.runs(updater))
        .map(|s| s.worker.as_str())
}
