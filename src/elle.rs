//! `--history-format elle`: the run's history as Jepsen writes one, so that an external checker
//! such as Elle (its `rw-register` model) can cross-check racelab's verdict (README "History").
//!
//! One EDN map per line, in the order the engine heard of them: each update is a transaction
//! invoked, then completed `:ok`, `:fail` or `:info`. Its value is a list of micro-operations
//! on registers:
//!
//! - a strategy that writes the whole journey reads and writes one register, the journey:
//!   `[[:r "naive/journey" 7] [:w "naive/journey" 12]]`;
//! - a strategy that writes only its segment writes that segment's register (`hash` blindly,
//!   `keys` after reading it); under write skew it first reads every segment.
//!
//! A written value is the update's write id (`Op::write_id`), unique in the run and stored with
//! what it wrote (`RacelabWrite`), so a read names the write it saw; `nil` is the state as
//! seeded. Keys carry the strategy's name, so one file holds every strategy of a run.

use std::fmt::Write as _;

use crate::event::{Event, EventKind, Outcome, SawWrite};
use crate::strategy::{Op, Storage, Strategy};
use crate::workload::{Scenario, Workload};

/// What one history file has written so far, across the strategies of a run.
#[derive(Debug, Default)]
pub struct Elle {
    /// The next op's `:index`.
    index: u64,
    /// Where this strategy's times start: every earlier strategy's ops come before its own.
    base_ns: u64,
    /// The latest `:time` written.
    last_ns: u64,
}

/// One strategy's run, as its events arrive.
pub struct Recorder<'a> {
    elle: &'a mut Elle,
    strategy: Strategy,
    workload: &'a Workload,
    /// Each updater's crashes so far: after an `:info` a process may not start another
    /// operation, so the updater's next one comes from a new process (`updater + updaters × n`).
    crashes: Vec<u32>,
    /// Each updater's last read of every segment (write skew under `hash` and `keys`).
    segments: Vec<Vec<SawWrite>>,
}

impl Elle {
    /// Starts recording `strategy`'s run.
    pub fn strategy<'a>(&'a mut self, strategy: Strategy, workload: &'a Workload) -> Recorder<'a> {
        self.base_ns = self.last_ns + 1_000;
        let updaters = workload.updaters as usize;
        Recorder {
            elle: self,
            strategy,
            workload,
            crashes: vec![0; updaters],
            segments: vec![Vec::new(); updaters],
        }
    }
}

/// A register's value as a read found it: a write id, or `nil` for the state as seeded.
fn value(write: u64) -> String {
    match write {
        0 => "nil".to_owned(),
        n => n.to_string(),
    }
}

/// An EDN string literal.
pub fn edn_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Recorder<'_> {
    /// The EDN line for `event`, if it is one the history holds (invocations and completions).
    pub fn line(&mut self, event: &Event) -> Option<String> {
        let updater = event.updater as usize;
        let (kind, round, reads) = match &event.kind {
            EventKind::Invoked { round } => ("invoke", *round, None),
            EventKind::Read { segments, .. } => {
                if let Some(last) = self.segments.get_mut(updater) {
                    last.clone_from(segments);
                }
                return None;
            }
            EventKind::Acknowledged { round, seen, .. } => {
                ("ok", *round, Some(seen.map(|s| s.write)))
            }
            EventKind::Failed { round, outcome, .. } => match outcome {
                Outcome::NotApplied => ("fail", *round, None),
                Outcome::Unknown => ("info", *round, None),
            },
            // The invariant said no: nothing was written, so the transaction is an abort.
            EventKind::Declined { round, .. } => ("fail", *round, None),
            _ => return None,
        };
        let crashes = self.crashes.get(updater).copied().unwrap_or(0);
        let process =
            u64::from(event.updater) + u64::from(self.workload.updaters) * u64::from(crashes);
        if kind == "info"
            && let Some(n) = self.crashes.get_mut(updater)
        {
            *n += 1;
        }
        let time = self.elle.base_ns + event.at.as_nanos() as u64;
        self.elle.last_ns = self.elle.last_ns.max(time);
        let index = self.elle.index;
        self.elle.index += 1;
        let mops = self.mops(event.updater, round, reads);
        Some(format!(
            "{{:index {index}, :time {time}, :type :{kind}, :process {process}, :f :txn, :value [{mops}], :strategy {strategy}, :updater {updater}, :round {round}}}",
            strategy = edn_string(self.strategy.name()),
            updater = event.updater + 1,
            round = round + 1,
        ))
    }

    /// The transaction's micro-operations. `reads` is `None` for an invocation or a completion
    /// that learned nothing (every read `nil`), `Some(own)` for an `:ok`, with what the read of
    /// the update's own register found when the strategy reports it.
    fn mops(&self, updater: u32, round: u32, reads: Option<Option<u64>>) -> String {
        let strategy = self.strategy.name();
        let write = Op::write_id(self.workload.updaters, updater, round);
        let segment = self.workload.segment_of(updater) as usize;
        let segments = &self.workload.journey.segments;
        let register = |i: usize| edn_string(&format!("{strategy}/{}", segments[i].segment_id));
        let mut out = Vec::new();
        match self.strategy.storage() {
            Storage::Document => {
                let journey = edn_string(&format!("{strategy}/journey"));
                match reads {
                    None => out.push(format!("[:r {journey} nil]")),
                    Some(Some(seen)) => out.push(format!("[:r {journey} {}]", value(seen))),
                    // An ok whose read is not known: the read is left out, not guessed.
                    Some(None) => {}
                }
                out.push(format!("[:w {journey} {write}]"));
            }
            storage @ (Storage::Hash | Storage::Keys) => {
                if self.workload.scenario == Scenario::WriteSkew {
                    // The read of every segment, as the last read found them.
                    let found = &self.segments[updater as usize];
                    for i in 0..segments.len() {
                        match reads {
                            None => out.push(format!("[:r {} nil]", register(i))),
                            Some(_) => {
                                if let Some(saw) = found.iter().find(|s| s.segment as usize == i) {
                                    out.push(format!("[:r {} {}]", register(i), value(saw.write)));
                                }
                            }
                        }
                    }
                } else if storage == Storage::Keys {
                    match reads {
                        None => out.push(format!("[:r {} nil]", register(segment))),
                        Some(Some(seen)) => {
                            out.push(format!("[:r {} {}]", register(segment), value(seen)))
                        }
                        Some(None) => {}
                    }
                }
                out.push(format!("[:w {} {write}]", register(segment)));
            }
        }
        out.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_edn_strings() {
        assert_eq!(edn_string("SEG-001"), "\"SEG-001\"");
        assert_eq!(edn_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
