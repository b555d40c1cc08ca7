//! `--history FILE`: every operation of a run as JSON lines, streamed to disk as it happens (a
//! consumer of the engine's events, like the report and the TUI), never held in memory.
//!
//! One line per event, each with the strategy and a monotonic time in microseconds
//! since the updaters were released. Kinds follow Jepsen's history vocabulary: `invoke` (an update
//! begins), `ok` (acknowledged), `fail` (certainly not applied), `info` (outcome unknown), plus
//! `read`, `retry`, `wait` (for a lock) along the way and one `final` line per segment after the
//! run with the status and count read back. Lost updates per segment = its `ok` lines minus its
//! `final` count.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::elle::Elle;
use crate::engine::RunResult;
use crate::error::Error;
use crate::event::{Event, EventKind, Outcome, RetryReason, Seen};
use crate::strategy::Strategy;
use crate::workload::Workload;

/// The history file of a `racelab run`, shared by the strategies it runs one after another.
pub struct History {
    path: PathBuf,
    out: Arc<Mutex<BufWriter<File>>>,
    /// `--history-format elle`: what the Elle history has written so far; `None` for racelab's
    /// own JSON lines.
    elle: Option<Arc<Mutex<Elle>>>,
}

/// `--history-format`: racelab's JSON lines, or a Jepsen history for Elle (README "History").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HistoryFormat {
    #[default]
    Racelab,
    Elle,
}

#[derive(Serialize)]
struct Line<'a> {
    strategy: &'a str,
    t_us: u64,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    updater: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    round: Option<u32>,
    segment: &'a str,
    /// The status the update writes (or, for `final`, the status read back).
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read: Option<SeenLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    /// The segment's count after this write (for `final`: as read back).
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_t_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct SeenLine {
    status: &'static str,
    count: u64,
}

impl From<Seen> for SeenLine {
    fn from(seen: Seen) -> SeenLine {
        SeenLine {
            status: seen.status,
            count: seen.count,
        }
    }
}

impl History {
    pub fn create(path: &Path, format: HistoryFormat) -> Result<History, Error> {
        let file = File::create(path).map_err(|e| history_error(path, e))?;
        Ok(History {
            path: path.to_owned(),
            out: Arc::new(Mutex::new(BufWriter::new(file))),
            elle: (format == HistoryFormat::Elle).then(|| Arc::new(Mutex::new(Elle::default()))),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// A watcher for one strategy's run: returns the sender to hand the engine and the task that
    /// writes what arrives. A `racelab run` runs each strategy once, so the strategy names the
    /// run in every line.
    pub fn record(
        &self,
        strategy: Strategy,
        workload: &Workload,
    ) -> (mpsc::Sender<Event>, JoinHandle<std::io::Result<()>>) {
        let (tx, mut rx) = mpsc::channel::<Event>(4096);
        let out = self.out.clone();
        let workload = workload.clone();
        if let Some(elle) = self.elle.clone() {
            let task = tokio::task::spawn_blocking(move || {
                // One strategy runs at a time: its recorder holds the history's state throughout.
                let mut elle = elle.lock().map_err(|_| poisoned())?;
                let mut recorder = elle.strategy(strategy, &workload);
                while let Some(event) = rx.blocking_recv() {
                    if let Some(mut line) = recorder.line(&event) {
                        line.push('\n');
                        let mut out = out.lock().map_err(|_| poisoned())?;
                        out.write_all(line.as_bytes())?;
                    }
                }
                Ok(())
            });
            return (tx, task);
        }
        // File writes block; they get a thread of their own instead of stalling the runtime.
        let task = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            while let Some(event) = rx.blocking_recv() {
                line.clear();
                if let Some(text) = event_line(strategy, &workload, &event) {
                    line.push_str(&text);
                    line.push('\n');
                    let mut out = out.lock().map_err(|_| poisoned())?;
                    out.write_all(line.as_bytes())?;
                }
            }
            Ok(())
        });
        (tx, task)
    }

    /// Writes the run's `final` lines: each segment as read back after the run.
    pub fn finish(&self, result: &RunResult, workload: &Workload) -> Result<(), Error> {
        let mut out = self
            .out
            .lock()
            .map_err(|_| history_error(&self.path, poisoned()))?;
        if self.elle.is_some() {
            // An Elle history is transactions only; what was read back is in the report.
            return out.flush().map_err(|e| history_error(&self.path, e));
        }
        let t_us = result.tally.last_at.as_micros() as u64;
        for (segment, state) in workload.journey.segments.iter().zip(&result.states) {
            let line = Line {
                strategy: result.strategy.name(),
                t_us,
                kind: "final",
                updater: None,
                round: None,
                segment: &segment.segment_id,
                status: Some(&state.status),
                read: None,
                version: None,
                count: Some(state.update_count),
                read_t_us: None,
                attempt: None,
                reason: None,
            };
            let text = serde_json::to_string(&line).unwrap_or_default();
            writeln!(out, "{text}").map_err(|e| history_error(&self.path, e))?;
        }
        // The interleaving the run followed (`--schedule`).
        if let Some(schedule) = &workload.schedule {
            let line = ScheduleLine {
                strategy: result.strategy.name(),
                t_us,
                kind: "schedule",
                schedule: schedule.to_string(),
            };
            let text = serde_json::to_string(&line).unwrap_or_default();
            writeln!(out, "{text}").map_err(|e| history_error(&self.path, e))?;
        }
        // Which worker ran which updaters, when workers ran them (`--workers`).
        for share in &result.workers {
            let line = WorkerLine {
                strategy: result.strategy.name(),
                t_us,
                kind: "worker",
                share,
            };
            let text = serde_json::to_string(&line).unwrap_or_default();
            writeln!(out, "{text}").map_err(|e| history_error(&self.path, e))?;
        }
        out.flush().map_err(|e| history_error(&self.path, e))
    }
}

/// A `schedule` line: the interleaving the run followed, as `--schedule` takes it.
#[derive(serde::Serialize)]
struct ScheduleLine<'a> {
    strategy: &'a str,
    t_us: u64,
    kind: &'static str,
    schedule: String,
}

/// A `worker` line: the share of one worker of the run, as in the report.
#[derive(serde::Serialize)]
struct WorkerLine<'a> {
    strategy: &'a str,
    t_us: u64,
    kind: &'static str,
    #[serde(flatten)]
    share: &'a crate::roster::WorkerShare,
}

fn poisoned() -> std::io::Error {
    std::io::Error::other("a history writer panicked")
}

pub fn history_error(path: &Path, e: std::io::Error) -> Error {
    Error::History {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn event_line(strategy: Strategy, workload: &Workload, event: &Event) -> Option<String> {
    let segment_index = workload.segment_of(event.updater);
    let segment = &workload.journey.segments[segment_index as usize].segment_id;
    let mut line = Line {
        strategy: strategy.name(),
        t_us: event.at.as_micros() as u64,
        kind: "",
        updater: Some(event.updater + 1),
        round: None,
        segment,
        status: None,
        read: None,
        version: None,
        count: None,
        read_t_us: None,
        attempt: None,
        reason: None,
    };
    let reason_text;
    match &event.kind {
        EventKind::Invoked { round } => {
            line.kind = "invoke";
            line.round = Some(round + 1);
            line.status = Some(workload.status_of(event.updater, *round));
        }
        EventKind::Read {
            round,
            seen,
            version,
            ..
        } => {
            line.kind = "read";
            line.round = Some(round + 1);
            line.read = seen.map(SeenLine::from);
            line.version = *version;
        }
        EventKind::WaitingForLock { round } => {
            line.kind = "wait";
            line.round = Some(round + 1);
        }
        EventKind::Retry {
            round,
            attempt,
            reason,
        } => {
            line.kind = "retry";
            line.round = Some(round + 1);
            line.attempt = Some(*attempt);
            line.reason = Some(match reason {
                RetryReason::Conflict => "conflict",
                RetryReason::LockBusy => "lock busy",
            });
        }
        EventKind::Acknowledged {
            round,
            status,
            read_at,
            seen,
            written_count,
            ..
        } => {
            line.kind = "ok";
            line.round = Some(round + 1);
            line.status = Some(status);
            line.read = seen.map(SeenLine::from);
            line.count = *written_count;
            line.read_t_us = read_at.map(|d| d.as_micros() as u64);
        }
        EventKind::Failed {
            round,
            status,
            outcome,
            reason,
            ..
        } => {
            line.kind = match outcome {
                Outcome::NotApplied => "fail",
                Outcome::Unknown => "info",
            };
            line.round = Some(round + 1);
            line.status = Some(status);
            reason_text = reason.clone();
            line.reason = Some(&reason_text);
        }
        EventKind::Declined { round, status, .. } => {
            // The invariant said no (write skew): Redis answered, nothing was written.
            line.kind = "fail";
            line.round = Some(round + 1);
            line.status = Some(status);
            line.reason = Some("declined: another segment is Boarding");
        }
        EventKind::Reading { .. } | EventKind::Writing { .. } | EventKind::Done => return None,
    }
    serde_json::to_string(&line).ok()
}
