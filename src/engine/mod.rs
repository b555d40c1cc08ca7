//! The run engine: one strategy, one workload, against one Redis.
//!
//! It seeds the journey under the run's own keys, prepares every updater, releases them together
//! (so the race is real), streams their events to a watcher while tallying them, reads the final
//! state back, verifies it and deletes the run's keys. It knows no screen: the headless report and
//! the TUI both consume what it emits and returns.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::event::Event;
use crate::failover::FailoverRecord;
use crate::journey::SegmentState;
use crate::keys::{Keys, SAFETY_TTL};
use crate::roster::WorkerShare;
use crate::schedule::Choice;
use crate::strategy::Strategy;
use crate::target::{Conn, Target};
use crate::truth::{Tally, Truth};
use crate::workload::Workload;

mod exec;
mod lifecycle;
mod local;

use lifecycle::{cleanup, read_final, renew_expiry, seed, written_back};
pub(crate) use local::Share;

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
    /// A scheduler someone drives (the TUI's step mode, a test): every step of the run's
    /// updaters waits for it. `None`: the workload's `--schedule`, if any, or free running.
    pub driver: Option<crate::schedule::Driver>,
    /// Where a run of `exec:` puts its journey service once it has stored the journey, for
    /// whoever reads the journey while the run goes on (the TUI's live grid).
    pub service: Option<crate::exec::ServiceSlot>,
    /// `--failover-at`: when after the release racelab fails its private primary over to a
    /// replica (README "Failover"). `None`: no failover.
    pub failover_at: Option<std::time::Duration>,
    /// Someone asks for the failover now (the TUI's `F`): a run going on when it is notified
    /// fails over then, if it has not yet.
    pub failover_now: Option<Arc<tokio::sync::Notify>>,
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
    /// The steps a scheduled run took, in order (`--schedule`, `racelab prove`); empty when the
    /// updaters ran free.
    pub taken: Vec<Choice>,
    /// For a user's own strategy (`exec:`, `lua:`): how the verdict was made, and how much the
    /// service raced.
    pub user: Option<UserRun>,
    /// Write skew's invariant as the final state shows it (`--scenario write-skew`).
    pub invariant: Option<crate::truth::Invariant>,
    /// The failover made during the run (`--failover-at`), or why it could not be made; `None`
    /// when none was asked for or the run ended first.
    pub failover: Option<Result<FailoverRecord, String>>,
}

/// What a run of a user's own strategy (`exec:`, `lua:`) adds to its result.
#[derive(Debug, Clone, Copy)]
pub struct UserRun {
    /// One updater per segment and one round: every acknowledged status must be in the final
    /// state. Otherwise only what real-time order proves is flagged (README "Race your own
    /// service").
    pub exact: bool,
    /// The most requests the service had in flight at once: whether it raced at all (`exec:`).
    pub in_flight_max: Option<u64>,
}

impl UserRun {
    fn of(workload: &Workload, in_flight_max: Option<u64>) -> UserRun {
        UserRun {
            exact: workload.updaters <= workload.segments() && workload.rounds == 1,
            in_flight_max,
        }
    }
}

/// Write skew's invariant, checked on a final state that could be read.
fn invariant(
    workload: &Workload,
    tally: &Tally,
    states: &[SegmentState],
    unverified: &Option<String>,
) -> Option<crate::truth::Invariant> {
    (workload.scenario == crate::workload::Scenario::WriteSkew && unverified.is_none())
        .then(|| crate::truth::check_invariant(tally, &workload.journey, states))
}

/// The truth of a finished run: none when its final state is unknown (`unverified`), by status
/// for a user's own strategy (`user`), by each segment's count otherwise.
fn judge(
    tally: &Tally,
    journey: &crate::journey::Journey,
    states: &[SegmentState],
    unverified: &Option<String>,
    user: Option<UserRun>,
    lost_limit: usize,
    failover: Option<&Result<FailoverRecord, String>>,
) -> Truth {
    match (unverified, user) {
        (Some(_), _) => Truth::default(),
        (None, Some(user)) => {
            crate::truth::verify_by_status(tally, journey, states, user.exact, lost_limit)
        }
        (None, None) => {
            let failover = failover.map(|f| f.as_ref().map_err(Clone::clone));
            crate::truth::verify_with_failover(tally, journey, states, lost_limit, failover)
        }
    }
}

impl RunResult {
    /// The run completed and its final state was read: its verdict can be trusted.
    pub fn is_complete(&self) -> bool {
        self.stopped.is_none() && self.unverified.is_none()
    }
}

/// Bounded, so a slow watcher slows updaters a little instead of growing memory.
const EVENT_CHANNEL: usize = 4096;

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
    if let Some(command) = strategy.exec_command() {
        return exec::run(
            target, strategy, command, workload, settings, run_id, &keys, watcher, cancel,
        )
        .await;
    }
    let mut conn = target.connection().await?;
    strategy.prepare(target, &mut conn, &keys).await?;
    seed(target, strategy, &mut conn, &keys, journey).await?;
    // A failover must find the journey on the replica it promotes: the race starts from what
    // every replica holds (README "Failover").
    target.replicated(&mut conn).await?;

    let outcome = tokio::select! {
        outcome = race(
            target, strategy, workload, &keys, &run_id, &conn, settings, watcher, cancel, None,
        ) => outcome,
        never = renew_expiry(
            conn.clone(),
            &keys,
            journey,
            target.major_version().is_some_and(|major| major >= 7),
            SAFETY_TTL,
        ) => match never {},
    };

    let final_states = read_final(strategy, &mut conn, &keys).await;
    // A user's script need not keep racelab's safety-net expiry (README "Race your own
    // service"), so its absence proves nothing there.
    let rewritten = match strategy.is_user() {
        true => None,
        false => written_back(strategy, &mut conn, &keys).await,
    };
    if settings.keep {
        // Kept on purpose: for as long as the user wants, not as long as the safety net.
        let all = keys.all(journey.segments.iter().map(|s| s.segment_id.as_str()));
        let mut pipe = redis::pipe();
        for key in all.iter().filter(|key| **key != keys.lock()) {
            pipe.persist(key).ignore();
        }
        let _: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
    }
    let pattern = format!("{}*", Keys::run_prefix(&settings.key_prefix, &run_id));
    let keys_left = if settings.keep {
        Some(format!("kept under {pattern}"))
    } else {
        // Deleting the run's keys needs no replica to have it (`--wait-replicas`): a WAIT that
        // ran out right after a failover must not leave them behind.
        let mut conn = conn.unwaited();
        let mut cleaned = cleanup(&mut conn, &keys, journey).await;
        if strategy.is_user() && cleaned.is_ok() {
            // A user's script may make keys of its own: under the run's prefix, and gone with it.
            cleaned = lifecycle::delete_matching(&mut conn, &pattern).await;
        }
        cleaned.err().map(|why| {
            format!(
                "left under {pattern}: {why}; they expire within {} by themselves, or delete them with redis-cli --scan --pattern '{pattern}' | xargs redis-cli del",
                humantime::format_duration(SAFETY_TTL)
            )
        })
    };
    let (tally, stopped, workers, taken, failover) = outcome?;
    let (states, unverified) = match final_states {
        Ok(Some(_)) if rewritten.is_some() => (Vec::new(), rewritten),
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
    // A user's script keeps no count racelab can trust: its verdict goes by status.
    let user = strategy.is_user().then(|| UserRun::of(workload, None));
    let truth = judge(
        &tally,
        journey,
        &states,
        &unverified,
        user,
        settings.lost_limit,
        failover.as_ref(),
    );
    let invariant = invariant(workload, &tally, &states, &unverified);
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
        taken,
        user,
        invariant,
        failover,
    })
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
    service: Option<&Arc<crate::exec::Service>>,
) -> Result<Raced, Error> {
    let (tx, mut rx) = mpsc::channel(EVENT_CHANNEL);
    // A fatal error in one updater stops the others; so does the caller's cancellation.
    let stop = cancel.child_token();
    let phases = watcher.is_some();
    let mut tally = Tally::new(workload.journey.segments.len());
    // A run of known length keeps each acknowledged write once, in room made for them all:
    // a list that doubles as it fills peaks at up to twice that (README "Performance").
    if workload.deadline.is_none() {
        tally.expect_writes(u64::from(workload.updaters) * u64::from(workload.rounds));
    }
    // The race's end, so a failover not yet due is not made after it.
    let done = CancellationToken::new();
    let failover = failover_during(target, strategy, keys, settings, &done);
    let collect = async {
        while let Some(event) = rx.recv().await {
            tally.record(&event);
            if let Some(watcher) = &watcher {
                // A watcher that went away must not stop the run.
                let _ = watcher.send(event).await;
            }
        }
        // Every updater is done: a failover not yet made is not made now.
        done.cancel();
    };
    let mut taken = Vec::new();
    let (mut reason, shares, failover) = match &settings.remote {
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
                settings.driver.as_ref(),
                service,
            )
            .await?;
            // Completion is every updater's sender gone: drop ours so the collector can end.
            drop(tx);
            share.release();
            let ((), (), failover) = tokio::join!(share.drive(), collect, failover);
            // Whoever drives the run reads the journey after its last step before the run's
            // final read and the deletion of its keys (step mode's story needs that read).
            if let Some(driver) = settings.driver.as_ref() {
                tokio::select! {
                    () = driver.unheld() => {}
                    () = cancel.cancelled() => {}
                }
            }
            taken = share.taken();
            (share.finish().await, Vec::new(), failover)
        }
        Some(remote) => {
            let remote = remote.race(strategy, workload, keys, run_id, tx, stop, phases);
            let (outcome, (), failover) = tokio::join!(remote, collect, failover);
            let (reason, shares) = outcome?;
            (reason, shares, failover)
        }
    };
    if reason.is_none() && cancel.is_cancelled() {
        reason = Some("interrupted".to_owned());
    }
    Ok((tally, reason, shares, taken, failover))
}

/// What a race returns: its tally, why it stopped early, who ran which updaters, the steps of a
/// scheduled run, and the failover made during it.
type Raced = (
    Tally,
    Option<String>,
    Vec<WorkerShare>,
    Vec<Choice>,
    Option<Result<FailoverRecord, String>>,
);

/// `--failover-at` (or the TUI's `F`): at that time after the release (now), or when asked,
/// fails the private primary over, reading each side's counts of the run's journey when it
/// matters; nothing when neither is set or the race is `done` first.
async fn failover_during(
    target: &Target,
    strategy: Strategy,
    keys: &Arc<Keys>,
    settings: &Settings,
    done: &CancellationToken,
) -> Option<Result<FailoverRecord, String>> {
    if settings.failover_at.is_none() && settings.failover_now.is_none() {
        return None;
    }
    let started = std::time::Instant::now();
    let at = async {
        match settings.failover_at {
            Some(at) => tokio::time::sleep(at).await,
            None => std::future::pending().await,
        }
    };
    let asked = async {
        match &settings.failover_now {
            Some(now) => now.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = at => {}
        () = asked => {}
        () = done.cancelled() => return None,
    }
    let snapshot = |mut conn: Conn| {
        let keys = keys.clone();
        async move {
            match read_final(strategy, &mut conn, &keys).await {
                Ok(Some(states)) => Some(states.iter().map(|s| s.update_count).collect()),
                _ => None,
            }
        }
    };
    Some(
        target
            .fail_over(started, &keys.journey(), done, snapshot)
            .await,
    )
}
