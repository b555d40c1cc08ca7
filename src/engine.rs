//! The run engine: one strategy, one workload, against one Redis.
//!
//! It seeds the journey under the run's own keys, prepares every updater, releases them together
//! (so the race is real), streams their events to a watcher while tallying them, reads the final
//! state back, verifies it and deletes the run's keys. It knows no screen: the headless report and
//! the TUI both consume what it emits and returns.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::event::{Event, EventKind, Outcome, Probe, WriteScope};
use crate::journey::{Journey, SegmentState, update_status};
use crate::keys::{Keys, SAFETY_TTL};
use crate::lease::Lease;
use crate::redis_errors::{is_refusal, is_transient};
use crate::roster::WorkerShare;
use crate::strategy::storage::StorageError;
use crate::strategy::{Op, Strategy, UpdateStatus, Updater};
use crate::target::{Conn, Target};
use crate::truth::{Tally, Truth, verify};
use crate::workload::Workload;

/// How the engine treats the Redis it runs on, and where the updaters run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub key_prefix: String,
    /// Leave the run's keys for inspection.
    pub keep: bool,
    /// How many lost updates a result lists (counts are always exact).
    pub lost_limit: usize,
    /// Where the updaters run when not in this process (`--workers`: a crew of worker
    /// processes); in this process when `None`.
    pub remote: Option<Arc<dyn RemoteUpdaters>>,
}

/// Why a race of updaters stopped early, if it did, and which worker ran which updaters.
pub type RaceOutcome = (Option<String>, Vec<WorkerShare>);

/// Updaters that run somewhere else: the seam through which the engine races a crew of worker
/// processes (`crate::crew`) without knowing how one works. The engine seeds, reads back,
/// verifies and cleans up as always; the remote side runs the updaters and sends their events
/// to `tx`, and they are tallied exactly as local ones.
pub trait RemoteUpdaters: Send + Sync + std::fmt::Debug {
    /// Races `workload`'s updaters of `strategy` on the run's `keys`, sending their events to
    /// `tx` (phase events only when `phases`), until they are done or `stop` is cancelled.
    #[allow(clippy::too_many_arguments)]
    fn race<'a>(
        &'a self,
        strategy: Strategy,
        workload: &'a Workload,
        keys: &'a Arc<Keys>,
        run_id: &'a str,
        tx: mpsc::Sender<Event>,
        stop: CancellationToken,
        phases: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<RaceOutcome, Error>> + Send + 'a>>;

    /// Which worker would run which of `updaters` updaters in the next race, so a screen can
    /// tag every lane from the start.
    fn plan(
        &self,
        updaters: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<WorkerShare>> + Send + '_>>;
}

/// Everything a run observed.
pub struct RunResult {
    pub strategy: Strategy,
    pub run_id: String,
    pub tally: Tally,
    /// What the final state proves; all zero when it could not be read (see `unverified`).
    pub truth: Truth,
    /// The final state as read back, segment by segment; empty when it could not be read.
    pub states: Vec<SegmentState>,
    /// Set when the run was cut short (interrupted, or an updater hit an error no retry mends).
    pub stopped: Option<String>,
    /// Set when the final state could not be read back: nothing about applied or lost updates
    /// can be said then, and the report says so instead of guessing.
    pub unverified: Option<String>,
    /// Where the run's keys still are, when they were not deleted: kept on purpose (`--keep`),
    /// or because Redis did not answer the cleanup.
    pub keys_left: Option<String>,
    /// Which worker ran which updaters, when a crew of workers ran them (`--workers`).
    pub workers: Vec<WorkerShare>,
}

impl RunResult {
    /// The run completed and its final state was read: its verdict can be trusted.
    pub fn is_complete(&self) -> bool {
        self.stopped.is_none() && self.unverified.is_none()
    }
}

/// Bounded, so a slow watcher slows updaters a little instead of growing memory.
const EVENT_CHANNEL: usize = 4096;

/// Attempts at reading the final state back, for a connection that is reconnecting.
const FINAL_READ_ATTEMPTS: u32 = 3;

/// Runs `strategy` on `workload`. Events go to `watcher` as they happen, if there is one.
pub async fn run(
    target: &Target,
    strategy: Strategy,
    workload: &Workload,
    settings: &Settings,
    watcher: Option<mpsc::Sender<Event>>,
    cancel: &CancellationToken,
) -> Result<RunResult, Error> {
    let run_id = Keys::new_run_id();
    run_as(
        target, strategy, workload, settings, run_id, watcher, cancel,
    )
    .await
}

/// [`run`] under a run id the caller chose, so an observer (the TUI's live grid) can build the
/// run's [`Keys`] and read the journey as Redis holds it while the run goes on.
pub async fn run_as(
    target: &Target,
    strategy: Strategy,
    workload: &Workload,
    settings: &Settings,
    run_id: String,
    watcher: Option<mpsc::Sender<Event>>,
    cancel: &CancellationToken,
) -> Result<RunResult, Error> {
    let journey = &workload.journey;
    let keys = Arc::new(Keys::new(&settings.key_prefix, &run_id, &journey.id));
    strategy.check_journey(journey)?;
    if target.major_version().is_some_and(|major| major < 6) {
        return Err(Error::Unsupported {
            strategy: strategy.name().to_owned(),
            reason: format!(
                "racelab needs Redis 6.0 or newer, and this one is {}: every write keeps its key's safety-net expiry with SET … KEEPTTL; use a newer Redis, or leave out --redis-url for a private one",
                target.version()
            ),
        });
    }
    let mut conn = target.connection().await?;
    strategy.prepare(target, &mut conn).await?;
    seed(target, strategy, &mut conn, &keys, journey).await?;

    let outcome = tokio::select! {
        outcome = race(
            target, strategy, workload, &keys, &run_id, &conn, settings, watcher, cancel,
        ) => outcome,
        never = renew_expiry(conn.clone(), &keys, journey) => match never {},
    };

    let final_states = read_final(strategy, &mut conn, &keys).await;
    if settings.keep {
        // Kept on purpose: for as long as the user wants, not as long as the safety net.
        let all = keys.all(journey.segments.iter().map(|s| s.segment_id.as_str()));
        let mut pipe = redis::pipe();
        for key in all.iter().filter(|key| **key != keys.lock()) {
            pipe.persist(key).ignore();
        }
        let _: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
    }
    let pattern = format!("{}:{run_id}:*", settings.key_prefix);
    let keys_left = if settings.keep {
        Some(format!("kept under {pattern}"))
    } else {
        cleanup(&mut conn, &keys, journey).await.err().map(|why| {
            format!(
                "left under {pattern}: {why}; they expire within {} by themselves, or delete them with redis-cli --scan --pattern '{pattern}' | xargs redis-cli del",
                humantime::format_duration(SAFETY_TTL)
            )
        })
    };
    let (tally, stopped, workers) = outcome?;
    let (states, unverified) = match final_states {
        Ok(Some(states)) if states.len() == journey.segments.len() => (states, None),
        Ok(_) => (
            Vec::new(),
            Some(format!(
                "the journey at {} vanished during the run",
                keys.journey()
            )),
        ),
        Err(e) => (
            Vec::new(),
            Some(format!("reading the final state failed: {e}")),
        ),
    };
    let truth = if unverified.is_none() {
        verify(&tally, journey, &states, settings.lost_limit)
    } else {
        Truth::default()
    };
    Ok(RunResult {
        strategy,
        run_id,
        tally,
        truth,
        states,
        stopped,
        unverified,
        keys_left,
        workers,
    })
}

/// Renews the safety-net expiry of the run's keys every quarter of [`SAFETY_TTL`] while the run
/// goes on, so a run of any length keeps its keys and a killed racelab's keys still go. Never
/// ends; failures are left to the next renewal (a missing key is not created by PEXPIRE).
async fn renew_expiry(mut conn: Conn, keys: &Keys, journey: &Journey) -> std::convert::Infallible {
    let ttl = SAFETY_TTL.as_millis() as i64;
    // Not the lock: its own short ttl is the lesson of `lock`. Not the events stream: the crew
    // keeps its expiry.
    let (lock, events) = (keys.lock(), keys.events());
    let all: Vec<String> = keys
        .all(journey.segments.iter().map(|s| s.segment_id.as_str()))
        .into_iter()
        .filter(|key| *key != lock && *key != events)
        .collect();
    loop {
        tokio::time::sleep(SAFETY_TTL / 4).await;
        for chunk in all.chunks(1000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.pexpire(key, ttl).ignore();
            }
            let _: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        }
    }
}

/// Writes the journey under the run's keys, after making sure none of them exists: racelab only
/// ever writes keys it created.
async fn seed(
    target: &Target,
    strategy: Strategy,
    conn: &mut Conn,
    keys: &Keys,
    journey: &Journey,
) -> Result<(), Error> {
    let fail = |reason: String| Error::Run {
        target: target.display().to_owned(),
        reason,
    };
    let all = keys.all(journey.segments.iter().map(|s| s.segment_id.as_str()));
    for chunk in all.chunks(1000) {
        let mut attempt = 1;
        let existing: u64 = loop {
            match redis::cmd("EXISTS").arg(chunk).query_async(conn).await {
                Err(e) if attempt < SETUP_ATTEMPTS && is_transient(&e) => attempt += 1,
                other => break other.map_err(|e| target.refused(&e))?,
            }
            tokio::time::sleep(SETUP_RETRY_PAUSE).await;
        };
        if existing > 0 {
            return Err(fail(format!(
                "keys under {} already exist, and racelab writes only keys it creates; run again (a new run id is drawn) or choose another --key-prefix",
                keys.journey()
            )));
        }
    }
    // Seeding writes the same values however often it runs, so a dropped connection is simply
    // tried again.
    let mut attempt = 1;
    loop {
        match strategy.storage().seed(conn, keys, journey).await {
            Err(e) if attempt < SETUP_ATTEMPTS && is_transient(&e) => attempt += 1,
            Ok(()) => return Ok(()),
            Err(e) => {
                let advised = crate::redis_errors::advice(&e, target.is_cluster()).is_some();
                return Err(match e.code() {
                    Some("NOPERM" | "NOAUTH" | "WRONGPASS") => target.refused(&e),
                    _ if advised => target.refused(&e),
                    _ => fail(format!(
                        "seeding the journey under {} failed: {}",
                        keys.journey(),
                        crate::redis_errors::describe(&e)
                    )),
                });
            }
        }
        tokio::time::sleep(SETUP_RETRY_PAUSE).await;
    }
}

/// Attempts at each setup command when the connection drops under it.
const SETUP_ATTEMPTS: u32 = 3;
const SETUP_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The final state, read again a few times if the shared connection is reconnecting.
async fn read_final(
    strategy: Strategy,
    conn: &mut Conn,
    keys: &Keys,
) -> Result<Option<Vec<SegmentState>>, StorageError> {
    let mut attempt = 1;
    loop {
        match strategy.storage().read_states(conn, keys).await {
            Err(StorageError::Redis(e)) if attempt < FINAL_READ_ATTEMPTS && !is_refusal(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Prepares the updaters, releases them together and tallies their events until the last one
/// is done. Local updaters are tasks of this process; a crew's are tasks of its workers, whose
/// events come back through Redis into the same tally.
#[allow(clippy::too_many_arguments)]
async fn race(
    target: &Target,
    strategy: Strategy,
    workload: &Workload,
    keys: &Arc<Keys>,
    run_id: &str,
    conn: &Conn,
    settings: &Settings,
    watcher: Option<mpsc::Sender<Event>>,
    cancel: &CancellationToken,
) -> Result<(Tally, Option<String>, Vec<WorkerShare>), Error> {
    let (tx, mut rx) = mpsc::channel(EVENT_CHANNEL);
    // A fatal error in one updater stops the others; so does the caller's cancellation.
    let stop = cancel.child_token();
    let phases = watcher.is_some();
    let mut tally = Tally::new(workload.journey.segments.len());
    let collect = async {
        while let Some(event) = rx.recv().await {
            tally.record(&event);
            if let Some(watcher) = &watcher {
                // A watcher that went away must not stop the run.
                let _ = watcher.send(event).await;
            }
        }
    };
    let (mut reason, shares) = match &settings.remote {
        None => {
            let share = Share::prepare(
                target,
                strategy,
                &Arc::new(workload.clone()),
                keys,
                0..workload.updaters,
                conn,
                &tx,
                stop,
                phases,
                None,
            )
            .await?;
            // Completion is every updater's sender gone: drop ours so the collector can end.
            drop(tx);
            share.release();
            collect.await;
            (share.finish().await, Vec::new())
        }
        Some(remote) => {
            let remote = remote.race(strategy, workload, keys, run_id, tx, stop, phases);
            let (outcome, ()) = tokio::join!(remote, collect);
            outcome?
        }
    };
    if reason.is_none() && cancel.is_cancelled() {
        reason = Some("interrupted".to_owned());
    }
    Ok((tally, reason, shares))
}

/// A share of a run's updaters, prepared and waiting for their release: every updater of a local
/// run, or the ones a worker was handed. The same updater loop runs either way.
pub(crate) struct Share {
    tasks: tokio::task::JoinSet<()>,
    release: watch::Sender<Option<std::time::Instant>>,
    stopped: Arc<std::sync::Mutex<Option<String>>>,
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
    ) -> Result<Share, Error> {
        let (release, released) = watch::channel(None);
        let stopped: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let silence = Arc::new(Silence::new(target.timeout()));
        let mut tasks = tokio::task::JoinSet::new();
        let needed = updaters.len();
        for i in updaters {
            let updater = match Updater::new(strategy, conn, target, workload.tuning).await {
                Ok(updater) => updater,
                Err(e) => return Err(explain_connections(e, strategy, needed, conn).await),
            };
            let task = UpdaterTask {
                index: i,
                updater,
                keys: keys.clone(),
                workload: workload.clone(),
                tx: tx.clone(),
                stop: stop.clone(),
                stopped: stopped.clone(),
                scope: strategy.scope(),
                silence: silence.clone(),
                phases,
                lease: lease.clone(),
            };
            tasks.spawn(task.run(released.clone()));
        }
        Ok(Share {
            tasks,
            release,
            stopped,
        })
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

/// A `watch` updater could not get its own connection. A server at its `maxclients` answers a
/// new connection with an error and closes it, which reaches the client as a broken pipe, so
/// the server's own count of clients says whether that is why. Either way, says how many
/// connections the run needs.
async fn explain_connections(e: Error, strategy: Strategy, needed: usize, conn: &Conn) -> Error {
    if strategy != Strategy::Watch {
        return e;
    }
    let need = format!(
        "this run's {needed} watch updaters need {needed} connections besides racelab's shared one"
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
    async fn run(mut self, mut released: watch::Receiver<Option<std::time::Instant>>) {
        let start = match released.wait_for(Option::is_some).await {
            Ok(start) => start.unwrap_or_else(std::time::Instant::now),
            Err(_) => return,
        };
        let workload = &self.workload;
        let segment = workload.segment_of(self.index);
        let segment_id = workload.journey.segments[segment as usize]
            .segment_id
            .clone();
        let mut rng = SmallRng::seed_from_u64(
            workload
                .seed
                .wrapping_add(u64::from(self.index).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        );
        let mut probe = Probe::new(Some(self.tx.clone()), start, self.index);
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
            let status = update_status(self.index as usize, round);
            let think = workload
                .think
                .mul_f64(1.0 + workload.jitter * rng.random::<f64>());
            let op = Op {
                retry_until: workload.deadline,
                lease: self.lease.as_deref(),
                keys: &self.keys,
                segment_id: &segment_id,
                status,
                think,
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
            if result.is_ok() {
                self.silence.answered();
            }
            let kind = match result {
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

/// Deletes every key the run may have created. Best effort: a failure here must not hide the
/// run's verdict, and the keys are all under the run's own prefix and id.
/// Says why, when not every key is gone: what Redis answered (NOPERM, READONLY), or that it did
/// not answer; a connection that dropped is tried a few times more.
async fn cleanup(conn: &mut Conn, keys: &Keys, journey: &Journey) -> Result<(), String> {
    let all = keys.all(journey.segments.iter().map(|s| s.segment_id.as_str()));
    for chunk in all.chunks(1000) {
        let mut attempt = 1;
        loop {
            match redis::cmd("DEL").arg(chunk).query_async::<i64>(conn).await {
                Ok(_) => break,
                Err(e) if attempt < SETUP_ATTEMPTS && is_transient(&e) => attempt += 1,
                Err(e) if is_transient(&e) => {
                    return Err(format!(
                        "Redis did not answer their deletion ({})",
                        crate::redis_errors::describe(&e)
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "Redis refused to delete them: {}",
                        crate::redis_errors::describe(&e)
                    ));
                }
            }
            tokio::time::sleep(SETUP_RETRY_PAUSE).await;
        }
    }
    Ok(())
}
