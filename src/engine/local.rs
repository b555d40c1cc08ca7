//! The updaters of this process: a share of a run's updaters (all of a local run's, or a
//! worker's part of a crew's), prepared, released together, and driven round by round, each
//! reporting its events; and the silence that stops a run whose Redis has stopped answering.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::event::{Event, EventKind, Outcome, Probe, WriteScope};
use crate::in_flight::{self, Cap};
use crate::keys::Keys;
use crate::lease::Lease;
use crate::schedule::{Choice, Driver, Gate, Schedule};
use crate::strategy::{Op, Strategy, UpdateStatus, Updater};
use crate::target::{Conn, Target};
use crate::workload::Workload;

/// A share of a run's updaters, prepared and waiting for their release: every updater of a local
/// run, or the ones a worker was handed. The same updater loop runs either way.
pub(crate) struct Share {
    tasks: tokio::task::JoinSet<()>,
    release: watch::Sender<Option<std::time::Instant>>,
    stopped: Arc<std::sync::Mutex<Option<String>>>,
    /// In a scheduled run (`--schedule`), the gate every step waits at, the schedule that opens
    /// it, and the lock's ttl for its `t` tokens.
    scheduled: Option<(Arc<Gate>, Schedule, std::time::Duration)>,
    stop: CancellationToken,
}

impl Share {
    /// Prepares updaters `updaters` (global indices: updater `i` works on segment `i mod S`)
    /// to send their events to `tx`. Cancelling `stop` ends them early; what they had in flight
    /// is reported unknown.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn prepare(
        target: &Target,
        strategy: Strategy,
        workload: &Arc<Workload>,
        keys: &Arc<Keys>,
        updaters: std::ops::Range<u32>,
        conn: &Conn,
        tx: &mpsc::Sender<Event>,
        stop: CancellationToken,
        phases: bool,
        lease: Option<Arc<Lease>>,
        driver: Option<&Driver>,
        service: Option<&Arc<crate::exec::Service>>,
    ) -> Result<Share, Error> {
        let (release, released) = watch::channel(None);
        let stopped: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let needed = updaters.len();
        // A driver someone else steps wins over the workload's fixed schedule.
        let scheduled = workload
            .schedule
            .clone()
            .filter(|_| driver.is_none())
            .map(|schedule| {
                (
                    Arc::new(Gate::new(workload.updaters)),
                    schedule,
                    workload.tuning.lock_ttl,
                )
            });
        let gate = driver
            .map(Driver::gate)
            .or_else(|| scheduled.as_ref().map(|(gate, _, _)| gate.clone()));
        // Every updater is made before the release, as before: a connection that cannot be
        // opened stops the run before it starts. Made, an updater is a few bytes of data; what
        // costs (its task, its requests) comes only when it is started.
        let first = updaters.start;
        let mut made = Vec::with_capacity(needed);
        for _ in updaters {
            match Updater::new(strategy, conn, target, workload.tuning, service).await {
                Ok(updater) => made.push(updater),
                Err(e) => return Err(explain_connections(e, strategy, needed, conn).await),
            }
        }
        let document = match strategy.storage() {
            crate::strategy::Storage::Document => workload.journey.to_json().len(),
            _ => 0,
        };
        let limit = in_flight::limit_for(document);
        // An updater has one request in flight at most: a share of no more updaters than the
        // limit never reaches it, and runs uncapped, with nothing added to any request.
        let cap =
            (gate.is_none() && uses_the_shared_connection(strategy) && needed > limit).then(|| {
                // local-mutex takes the process's mutex before its opening request, and the
                // holder's write is what lets the next one take it: a barrier there would never
                // open.
                let barrier = strategy != Strategy::LocalMutex;
                Cap::new(limit, needed, barrier)
            });
        let launch = Launch {
            keys: keys.clone(),
            workload: workload.clone(),
            tx: tx.clone(),
            stop: stop.clone(),
            stopped: stopped.clone(),
            scope: strategy.scope(),
            silence: Arc::new(Silence::new(target.timeout())),
            phases,
            lease,
            gate,
            cap,
        };
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(launch.run(first, made, released));
        Ok(Share {
            tasks,
            release,
            stopped,
            scheduled,
            stop,
        })
    }

    /// The steps a scheduled run took (empty free running).
    pub(crate) fn taken(&self) -> Vec<Choice> {
        self.scheduled
            .as_ref()
            .map_or_else(Vec::new, |(gate, _, _)| gate.taken())
    }

    /// In a scheduled run, opens the gates as the schedule says until every updater is done; a
    /// token that cannot be taken stops the run and says why. Free running, nothing to do.
    pub(crate) async fn drive(&self) {
        let Some((gate, schedule, ttl)) = &self.scheduled else {
            return;
        };
        let driven = tokio::select! {
            driven = gate.drive(schedule, *ttl) => driven,
            () = self.stop.cancelled() => Ok(()),
        };
        if let Err(reason) = driven {
            if let Ok(mut stopped) = self.stopped.lock() {
                stopped.get_or_insert(reason);
            }
            self.stop.cancel();
        }
    }

    /// Releases every updater of the share at once; event times are measured from now.
    pub(crate) fn release(&self) {
        let _ = self.release.send(Some(std::time::Instant::now()));
    }

    /// Waits for every updater to end; why the share stopped early, if it did.
    pub(crate) async fn finish(mut self) -> Option<String> {
        while self.tasks.join_next().await.is_some() {}
        self.stopped.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Whether `strategy`'s updaters send their requests on the run's shared connection, which the
/// cap on requests in flight governs. A `watch` updater owns a connection (WATCH is connection
/// state), and an `exec:` one asks the user's service: their requests never pass the cap, which
/// would then never see them open.
fn uses_the_shared_connection(strategy: Strategy) -> bool {
    !matches!(strategy, Strategy::Watch | Strategy::WatchOther) && strategy.exec_command().is_none()
}

/// What the updaters of a share have in common, and how they are started once released.
///
/// Updaters start as their requests can go (README "Performance"): free running on the shared
/// connection, one is started only while fewer than the cap's limit wait for their opening
/// request; until then it is the few bytes [`Updater::new`] made. Started, it runs exactly as
/// before (its own think time, its own rounds), and its opening request goes before any later
/// one, so every updater still reads before any of them writes. In a scheduled run the schedule
/// orders every step, and every updater starts at the release.
struct Launch {
    keys: Arc<Keys>,
    workload: Arc<Workload>,
    tx: mpsc::Sender<Event>,
    stop: CancellationToken,
    stopped: Arc<std::sync::Mutex<Option<String>>>,
    scope: WriteScope,
    silence: Arc<Silence>,
    phases: bool,
    lease: Option<Arc<Lease>>,
    gate: Option<Arc<Gate>>,
    cap: Option<Arc<Cap>>,
}

impl Launch {
    async fn run(
        self,
        first: u32,
        updaters: Vec<Updater>,
        mut released: watch::Receiver<Option<std::time::Instant>>,
    ) {
        let start = match released.wait_for(Option::is_some).await {
            Ok(start) => start.unwrap_or_else(std::time::Instant::now),
            Err(_) => return,
        };
        let mut running = tokio::task::JoinSet::new();
        for (index, updater) in (first..).zip(updaters) {
            let task = UpdaterTask {
                index,
                updater,
                keys: self.keys.clone(),
                workload: self.workload.clone(),
                tx: self.tx.clone(),
                stop: self.stop.clone(),
                stopped: self.stopped.clone(),
                scope: self.scope,
                silence: self.silence.clone(),
                phases: self.phases,
                lease: self.lease.clone(),
                gate: self.gate.clone(),
            };
            match &self.cap {
                Some(cap) => {
                    cap.room_to_start().await;
                    let admission = in_flight::Admission::new(cap.clone());
                    running.spawn(in_flight::admitted(admission, task.run(start)));
                }
                None => {
                    running.spawn(task.run(start));
                }
            }
            // The ended ones go, so the set holds only the running.
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    }
}

/// A `watch` (or `watch-other`) updater could not get its own connection. A server at its `maxclients` answers a
/// new connection with an error and closes it, which reaches the client as a broken pipe, so
/// the server's own count of clients says whether that is why. Either way, says how many
/// connections the run needs.
async fn explain_connections(e: Error, strategy: Strategy, needed: usize, conn: &Conn) -> Error {
    if !matches!(strategy, Strategy::Watch | Strategy::WatchOther) {
        return e;
    }
    let need = format!(
        "this run's {needed} {strategy} updaters need {needed} connections besides racelab's shared one"
    );
    match e {
        Error::Answer { target, reason } => Error::Answer {
            target,
            reason: format!("{reason} ({need})"),
        },
        Error::Connect { target, reason } => {
            let info: redis::RedisResult<String> = redis::cmd("INFO")
                .arg("clients")
                .query_async(&mut conn.clone())
                .await;
            let field = |info: &str, name: &str| -> Option<u64> {
                info.lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                    .and_then(|v| v.trim().parse().ok())
            };
            let full = info.ok().and_then(|info| {
                let (clients, max) = (
                    field(&info, "connected_clients")?,
                    field(&info, "maxclients")?,
                );
                (clients + 1 >= max).then_some((clients, max))
            });
            match full {
                Some((clients, max)) => Error::Answer {
                    target,
                    reason: format!(
                        "max number of clients reached ({clients} of maxclients {max}): raise maxclients (CONFIG SET maxclients, or redis.conf) or run fewer updaters: {need}"
                    ),
                },
                None => Error::Connect {
                    target,
                    reason: format!("{reason} ({need})"),
                },
            }
        }
        other => other,
    }
}

struct UpdaterTask {
    index: u32,
    updater: Updater,
    keys: Arc<Keys>,
    workload: Arc<Workload>,
    tx: mpsc::Sender<Event>,
    stop: CancellationToken,
    stopped: Arc<std::sync::Mutex<Option<String>>>,
    scope: WriteScope,
    silence: Arc<Silence>,
    /// Phase events go out only when someone watches.
    phases: bool,
    /// A worker's hold on the run: once lapsed, no more writes.
    lease: Option<Arc<Lease>>,
    /// The gate every step waits at in a scheduled run.
    gate: Option<Arc<Gate>>,
}

/// How long Redis has gone without answering any updater. A fault that passes (a killed
/// connection, a short pause) is ridden out; a server that is gone stops the run after `limit`,
/// instead of every remaining update waiting out its own timeouts.
struct Silence {
    since: std::sync::Mutex<Option<std::time::Instant>>,
    limit: Duration,
}

impl Silence {
    fn new(timeout: Duration) -> Silence {
        Silence {
            since: std::sync::Mutex::new(None),
            limit: (timeout * 3).max(Duration::from_secs(2)),
        }
    }

    fn answered(&self) {
        if let Ok(mut since) = self.since.lock() {
            *since = None;
        }
    }

    /// Records an unanswered command; true once nothing has been answered for `limit`.
    fn unanswered_for_too_long(&self) -> bool {
        let Ok(mut since) = self.since.lock() else {
            return false;
        };
        since.get_or_insert_with(std::time::Instant::now).elapsed() >= self.limit
    }
}

impl UpdaterTask {
    async fn run(mut self, start: std::time::Instant) {
        let gate = self.gate.clone();
        self.updates(start).await;
        // Done, or stopped: the schedule's driver no longer waits for this updater.
        if let Some(gate) = gate {
            gate.finished(self.index);
        }
    }

    async fn updates(&mut self, start: std::time::Instant) {
        // Borrowed from the run's journey, not copied: at 100,000 updaters every byte an
        // updater holds through its think time counts.
        let workload = self.workload.clone();
        let workload = &*workload;
        let segment = workload.segment_of(self.index);
        let segment_id = workload.journey.segments[segment as usize]
            .segment_id
            .as_str();
        let mut rng = SmallRng::seed_from_u64(
            workload
                .seed
                .wrapping_add(u64::from(self.index).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        );
        // Write skew's per-segment strategies read every segment to check the invariant.
        let segment_ids: Vec<String> = match workload.scenario {
            crate::workload::Scenario::WriteSkew => workload
                .journey
                .segments
                .iter()
                .map(|s| s.segment_id.clone())
                .collect(),
            crate::workload::Scenario::LostUpdate => Vec::new(),
        };
        let mut probe =
            Probe::new(Some(self.tx.clone()), start, self.index).with_gate(self.gate.clone());
        if !self.phases {
            probe = probe.without_phases();
        }
        for round in 0..workload.rounds {
            if self.stop.is_cancelled()
                || workload
                    .deadline
                    .is_some_and(|deadline| probe.now() >= deadline)
            {
                break;
            }
            let status = workload.status_of(self.index, round);
            let think = workload
                .think
                .mul_f64(1.0 + workload.jitter * rng.random::<f64>());
            let op = Op {
                journey_id: &workload.journey.id,
                journey: Some(&workload.journey),
                invariant: workload.scenario == crate::workload::Scenario::WriteSkew,
                segment_ids: &segment_ids,
                retry_until: workload.deadline,
                lease: self.lease.as_deref(),
                keys: &self.keys,
                segment_id,
                status,
                think,
                write: Op::write_id(workload.updaters, self.index, round),
            };
            probe.begin(round);
            let began = probe.now();
            probe.emit(EventKind::Invoked { round }).await;
            let result = tokio::select! {
                result = self.updater.update(&op, &mut probe) => result,
                () = self.stop.cancelled() => {
                    // Whatever was in flight may or may not have reached Redis.
                    probe.emit(EventKind::Failed {
                        round,
                        segment,
                        status,
                        outcome: Outcome::Unknown,
                        reason: "stopped while in flight".into(),
                        gave_up: false,
                    }).await;
                    break;
                }
            };
            // A turn reserved for a write that was not made goes back to the line.
            in_flight::unreserve();
            if result.is_ok() {
                self.silence.answered();
            }
            let kind = match result {
                // The invariant said no: a decision, not a failure.
                Ok(UpdateStatus::Declined) => EventKind::Declined {
                    round,
                    segment,
                    status,
                },
                Ok(UpdateStatus::Applied) => EventKind::Acknowledged {
                    round,
                    segment,
                    status,
                    read_at: probe.read_at(),
                    seen: probe.seen(),
                    written_count: probe.written_count(),
                    latency: probe.now().saturating_sub(began),
                    scope: self.scope,
                },
                Ok(missing) => {
                    // racelab's own journey lost its data under the run (a FLUSHDB, a DEL, an
                    // expiry): whatever the strategy, the run stops and says so, rather than
                    // count the updates that found nothing as refused and go on to a verdict.
                    let reason = match missing {
                        UpdateStatus::SegmentNotFound => format!(
                            "segment {segment_id} vanished from the journey at {} during the run",
                            self.keys.journey()
                        ),
                        _ => format!(
                            "the journey at {} vanished during the run",
                            self.keys.journey()
                        ),
                    };
                    if let Ok(mut stopped) = self.stopped.lock() {
                        stopped.get_or_insert(reason.clone());
                    }
                    self.stop.cancel();
                    EventKind::Failed {
                        round,
                        segment,
                        status,
                        outcome: Outcome::NotApplied,
                        reason: reason.into(),
                        gave_up: false,
                    }
                }
                Err(e) => {
                    let gone = e.unreachable && self.silence.unanswered_for_too_long();
                    if e.fatal || gone {
                        let reason = if gone {
                            format!(
                                "Redis stopped answering for {} ({})",
                                humantime::format_duration(self.silence.limit),
                                e.reason
                            )
                        } else {
                            e.reason.clone()
                        };
                        if let Ok(mut stopped) = self.stopped.lock() {
                            stopped.get_or_insert(reason);
                        }
                        self.stop.cancel();
                    }
                    EventKind::Failed {
                        round,
                        segment,
                        status,
                        outcome: e.outcome,
                        reason: e.reason.into(),
                        gave_up: e.gave_up,
                    }
                }
            };
            probe.emit(kind).await;
        }
        probe.emit(EventKind::Done).await;
    }
}
