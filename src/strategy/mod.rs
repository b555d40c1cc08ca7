//! The ways to update a segment's status: the seed's bug, its fixes, and fixes that look right
//! and still lose updates (README "Fixes that look right"), one file each.
//!
//! [`Strategy`] names them (it is what `-s` parses); [`Updater`] is one updater's working state
//! for a strategy: most share the run's multiplexed connection, the optimistic ones that need
//! connection state of their own hold a dedicated one. [`Storage`] is how a strategy lays the
//! journey out in Redis, which decides how it is seeded and read back.

pub mod storage;
pub mod user;

use std::fmt;
use std::time::Duration;

use crate::target::Conn;
use rand::Rng;
use serde::Serialize;

pub use storage::Storage;

use crate::error::Error;
use crate::event::{Outcome, Probe, WriteScope};
use crate::journey::{Journey, JourneyCopy};
use crate::keys::Keys;
use crate::lease::Lease;
use crate::redis_errors::{describe, is_fatal, is_unreachable};
use crate::target::Target;
use crate::workload::{RaceShape, Tuning};

/// What a strategy's own file says about it: everything the rest of racelab needs to know
/// besides how an update is made.
pub struct Facts {
    /// What `-s` calls it.
    pub name: &'static str,
    /// One line on how an update is made.
    pub how: &'static str,
    /// Its steps, one Redis round trip each: what a `--schedule` token lets an updater take.
    pub steps: &'static [&'static str],
    /// How it lays the journey out in Redis, which decides seeding and reading back.
    pub storage: Storage,
    /// What one of its writes replaces, for attributing lost updates.
    pub scope: WriteScope,
    /// It decodes and re-encodes the journey with Redis's cjson (`[]` becomes `{}`, 14 digits).
    pub cjson: bool,
    /// Whether it loses updates on a workload (`--expect auto`): `Some(true)` only where a loss
    /// is forced, `Some(false)` only where none is possible, `None` (either) where timing
    /// decides.
    pub loses: fn(&RaceShape) -> Option<bool>,
    /// A wrong fix (README "Fixes that look right"): why it looks like a fix. `None` for the
    /// seed's bug and the real fixes.
    pub looks_right: Option<&'static str>,
    /// A wrong fix: why it still loses updates. `None` for the seed's bug and the real fixes.
    pub wrong: Option<&'static str>,
    /// A wrong fix: the command that shows it losing, every time.
    pub shown_by: Option<&'static str>,
    /// It holds a lock with a ttl (`--lock-ttl`) while it works: time passing (`t`) can expire
    /// it mid-work, so `prove --expiry` lets time pass in its interleavings.
    pub expires: bool,
}

/// What an updater is made from: the run's shared connection (right for single commands,
/// transactions sent as one pipeline and scripts, which carry no state between commands), the
/// target (for strategies that need a connection of their own) and the tuning.
pub(crate) struct Context<'a> {
    pub shared: &'a Conn,
    pub target: &'a Target,
    pub tuning: Tuning,
    /// The run's journey service, for `exec:` (README "Race your own service").
    pub service: Option<&'a std::sync::Arc<crate::exec::Service>>,
}

/// One strategy: its facts, how an updater of it is made, how it makes an update, and any
/// run-wide preparation (loading a function library).
pub(crate) trait Kind: Sized {
    const FACTS: Facts;

    async fn new(cx: &Context<'_>) -> Result<Self, Error>;

    async fn update(&mut self, op: &Op<'_>, probe: &mut Probe)
    -> Result<UpdateStatus, UpdateError>;

    /// Before the journey is seeded under `keys`.
    async fn prepare(_target: &Target, _conn: &mut Conn, _keys: &Keys) -> Result<(), Error> {
        Ok(())
    }
}

/// Lists the strategies once: each line is a variant, its file and its updater type. Everything
/// that goes over every strategy (the enum `-s` parses, `all`, the facts, the updaters and their
/// dispatch, the help text) is made from this list, so a new strategy is one new file and one
/// line here.
macro_rules! strategies {
    ($($(#[$doc:meta])* $variant:ident => $module:ident :: $kind:ident,)+) => {
        $(mod $module;)+

        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Strategy {
            $($(#[$doc])* $variant,)+
            /// A user's own: `exec:CMD` or `lua:FILE` ([`user`]).
            User(user::UserId),
        }

        impl Strategy {
            /// Every strategy, in the order `all` runs them: the bug, the fixes, then the wrong
            /// fixes.
            pub const ALL: &'static [Strategy] = &[$(Strategy::$variant,)+];

            /// What its own file says about it.
            pub fn facts(self) -> &'static Facts {
                match self {
                    $(Strategy::$variant => &<$module::$kind as Kind>::FACTS,)+
                    Strategy::User(id) => &id.get().facts,
                }
            }

            /// Run-wide preparation before the journey is seeded under `keys`: loading the
            /// function library, trying the lock's release.
            pub async fn prepare(
                self,
                target: &Target,
                conn: &mut Conn,
                keys: &Keys,
            ) -> Result<(), Error> {
                match self {
                    $(Strategy::$variant => {
                        <$module::$kind as Kind>::prepare(target, conn, keys).await
                    })+
                    Strategy::User(id) => user::prepare(id, target, conn).await,
                }
            }
        }

        /// One updater's working state for its strategy. Boxed: the strategies' states differ
        /// in size (`watch` carries a connection and a connector of its own), and an enum of them
        /// unboxed would be the largest's size for every updater.
        pub enum Updater {
            $($variant(Box<$module::$kind>),)+
            User(Box<user::UserUpdater>),
        }

        impl Updater {
            pub async fn new(
                strategy: Strategy,
                shared: &Conn,
                target: &Target,
                tuning: Tuning,
                service: Option<&std::sync::Arc<crate::exec::Service>>,
            ) -> Result<Updater, Error> {
                let cx = Context { shared, target, tuning, service };
                Ok(match strategy {
                    $(Strategy::$variant => {
                        Updater::$variant(Box::new(<$module::$kind as Kind>::new(&cx).await?))
                    })+
                    Strategy::User(id) => Updater::User(Box::new(user::UserUpdater::new(id, &cx)?)),
                })
            }

            pub async fn update(
                &mut self,
                op: &Op<'_>,
                probe: &mut Probe,
            ) -> Result<UpdateStatus, UpdateError> {
                // Each strategy's future is boxed at its own size: unboxed, every updater task
                // would carry the largest strategy's state machine, which at 100,000 updaters is
                // most of racelab's memory.
                match self {
                    $(Updater::$variant(s) => Box::pin(Kind::update(s.as_mut(), op, probe)).await,)+
                    Updater::User(s) => Box::pin(s.update(op, probe)).await,
                }
            }
        }
    };
}

strategies! {
    /// GET the whole journey, change one segment, think, SET it back (the seed's bug).
    Naive => naive::Naive,
    /// Segment state in hash fields of one key: one atomic write, no read-modify-write.
    Hash => hash::Hash,
    /// One key per segment, each update a read-modify-write of its own segment's key.
    Keys => keys::SegmentKeys,
    /// WATCH, GET, think, MULTI/SET/EXEC; retry when EXEC aborts.
    Watch => watch::Watch,
    /// The whole read-modify-write in one Lua script.
    Lua => lua::Lua,
    /// SET lock NX PX ttl, read-modify-write, compare-and-delete unlock.
    Lock => lock::Lock,
    /// The lock plus a fencing token: a write with an outdated token is refused.
    Fenced => fenced::Fenced,
    /// Version-stamped compare-and-set write; retry on conflict.
    Cas => cas::Cas,
    /// The read-modify-write as a Redis 7 Function.
    Function => function::Function,
    /// Wrong fix: GET outside, then MULTI/SET/EXEC with no WATCH.
    Multi => multi::Multi,
    /// Wrong fix: WATCH the segment's own key, write the journey key.
    WatchOther => watch_other::WatchOther,
    /// Wrong fix: the lock with a plain DEL to unlock.
    DelUnlock => del_unlock::DelUnlock,
    /// Wrong fix: an in-process mutex around the read-modify-write.
    LocalMutex => local_mutex::LocalMutex,
}

/// `-s`'s help: every strategy's name, the wrong fixes apart.
pub static STRATEGY_HELP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let names = |wrong: bool| -> String {
        Strategy::ALL
            .iter()
            .filter(|s| s.is_wrong_fix() == wrong)
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "Strategies: {}; wrong fixes (they look right and lose updates): {}; a comma list, or all (every one of them); or your own: lua:FILE, exec:CMD (last in a list).",
        names(false),
        names(true)
    )
});

impl Strategy {
    pub fn name(self) -> &'static str {
        self.facts().name
    }

    /// One line on how an update is made.
    pub fn how(self) -> &'static str {
        self.facts().how
    }

    pub fn storage(self) -> Storage {
        self.facts().storage
    }

    /// A fix that looks right and loses updates all the same (README "Fixes that look right").
    pub fn is_wrong_fix(self) -> bool {
        self.facts().wrong.is_some()
    }

    /// What a write of this strategy replaces, for attributing lost updates.
    pub fn scope(self) -> WriteScope {
        self.facts().scope
    }

    /// Whether this strategy loses updates on a workload (`--expect auto`); see [`Facts::loses`].
    ///
    /// A scheduled run (`--schedule`) loses exactly when its schedule makes it, whatever the
    /// timing: a strategy that could lose under the worst timing (any think, any lock ttl)
    /// expects either, one that could not expects intact.
    pub fn loses_updates(self, shape: &RaceShape) -> Option<bool> {
        if shape.scenario == crate::workload::Scenario::WriteSkew {
            return self.breaks_the_invariant(shape);
        }
        let loses = self.facts().loses;
        if !shape.scheduled {
            return loses(shape);
        }
        let worst = RaceShape {
            think: Duration::from_secs(3600),
            jitter: 0.0,
            lock_ttl: Duration::ZERO,
            ..*shape
        };
        match loses(&worst) {
            Some(false) => Some(false),
            _ => None,
        }
    }

    /// Whether write skew breaks the invariant under this strategy (`--expect auto` with
    /// `--scenario write-skew`, README "Scenarios"). A strategy that makes each segment's update
    /// atomic on its own (`hash`, `keys`) breaks it where two updaters of different segments both
    /// read before either writes (forced with a think time); one that serializes the whole
    /// journey holds it wherever it loses no update; a read-modify-write that loses updates may
    /// hold it by accident (its last whole-journey write wins), so either.
    fn breaks_the_invariant(self, shape: &RaceShape) -> Option<bool> {
        if self.is_user() {
            return None;
        }
        let lost_update = RaceShape {
            scenario: crate::workload::Scenario::LostUpdate,
            ..*shape
        };
        match self.storage() {
            Storage::Hash | Storage::Keys => {
                if shape.updaters < 2 || shape.segments < 2 {
                    Some(false)
                } else if shape.think >= FORCED_RACE_THINK && !shape.scheduled {
                    Some(true)
                } else {
                    None
                }
            }
            Storage::Document => match self.loses_updates(&lost_update) {
                Some(false) => Some(false),
                _ => None,
            },
        }
    }

    /// Refuses a journey this strategy cannot store faithfully.
    pub fn check_journey(self, journey: &Journey) -> Result<(), Error> {
        match journey.cjson_hazard() {
            Some(hazard) if self.facts().cjson => Err(Error::Usage(format!(
                "this journey cannot be used with the {} strategy: {hazard}; use another journey or another strategy",
                self.name()
            ))),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Strategy {
    /// The strategy `-s` names: a built-in one by its name (any case), or a user's own
    /// (`exec:CMD`, `lua:FILE`). Says what is wrong.
    pub fn parse(text: &str) -> Result<Strategy, String> {
        if user::is_user(text) {
            return user::register(text).map(Strategy::User);
        }
        Strategy::ALL
            .iter()
            .copied()
            .find(|s| s.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown strategy '{text}'; choose from {}, exec:CMD, lua:FILE, a comma list, or all",
                    names.join(", ")
                )
            })
    }

    /// The journey service's command, for `exec:` strategies.
    pub fn exec_command(self) -> Option<&'static str> {
        match self {
            Strategy::User(id) => match &id.get().spec {
                user::Spec::Exec(command) => Some(command),
                user::Spec::Lua(_) => None,
            },
            _ => None,
        }
    }

    /// A user's own strategy (`exec:`, `lua:`): racelab cannot keep its per-segment count, so
    /// its verdict goes by status (README "Race your own service").
    pub fn is_user(self) -> bool {
        matches!(self, Strategy::User(_))
    }
}

/// Strategies travel by name (a worker's job, a report): a user's own is registered again on
/// the other side.
impl Serialize for Strategy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Strategy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Strategy, D::Error> {
        let name = String::deserialize(deserializer)?;
        Strategy::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// A read-modify-write of what `contenders` updaters share (`--expect auto`): forced when they
/// think long enough for every read to land before any write, possible but not forced below.
pub(crate) fn read_modify_write_loses(shape: &RaceShape, contenders: bool) -> Option<bool> {
    if !contenders {
        Some(false)
    } else if shape.think >= FORCED_RACE_THINK {
        // Every updater reads at its release and writes a think time later, so any two that
        // share what they write overlap: the later write erases the earlier one.
        Some(true)
    } else {
        // Without a real pause the window is about one round trip: a race may or may not
        // happen.
        None
    }
}

/// A fix that never loses an update, whatever the workload.
pub(crate) fn never_loses(_: &RaceShape) -> Option<bool> {
    Some(false)
}

/// The think time from which a read-modify-write race is forced (README "Strategies"): well
/// above a round trip, so every updater's read lands before any updater's write.
pub const FORCED_RACE_THINK: Duration = Duration::from_millis(1);

/// MULTI, the commands `queue` adds, and EXEC, sent as one plain pipeline; EXEC's reply, or
/// `None` when it aborted because a WATCHed key changed.
///
/// Not `redis::pipe().atomic()`: in redis-rs 1.8.1 its reply bookkeeping underflows when Redis
/// refuses MULTI itself (an ACL user without it, a nested MULTI), which panics in debug builds.
/// Reading EXEC's reply here keeps the same wire traffic and one round trip.
pub(crate) async fn transaction<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    queue: impl FnOnce(&mut redis::Pipeline),
) -> redis::RedisResult<Option<redis::Value>> {
    let mut pipe = redis::pipe();
    pipe.cmd("MULTI").ignore();
    queue(&mut pipe);
    pipe.cmd("EXEC");
    let (exec,): (Option<redis::Value>,) = pipe.query_async(conn).await?;
    Ok(exec)
}

/// The pause between read and write. A zero pause is no pause at all: a zero `sleep` still
/// waits for the timer wheel's next millisecond tick. Every strategy writes only after it, so
/// this is where a worker whose lease lapsed during the pause (a stalled process the coordinator
/// took for vanished) stops before writing into a run that may be over.
pub(crate) async fn think(op: &Op<'_>) -> Result<(), UpdateError> {
    if !op.think.is_zero() {
        tokio::time::sleep(op.think).await;
    }
    if let Some(lease) = op.lease {
        if lease.lapsed() {
            return Err(UpdateError::lease_lapsed());
        }
        // The window a stalled worker can sleep through, held open for the test that stops one
        // there: its write must then be refused by Redis (README "Workers").
        if let Some(stall) = lease.stall {
            tokio::time::sleep(stall).await;
        }
    }
    // The write waits its turn here, before it is built: an updater in line holds what it read,
    // not the document it will send (README "Performance").
    crate::in_flight::reserve().await;
    Ok(())
}

/// A write that must be made once and only by an admitted worker (`assets/guarded_write.lua`,
/// EVAL so that it can be queued inside MULTI too): `cmds`, touching `keys`, made only while the
/// worker is admitted to the run (a worker's writes), and never twice for one update (every
/// write on a cluster, whose client resends a command after a dropped connection even when Redis
/// had run it). `None` for a single server's own updaters: the strategy sends its commands as
/// they are.
pub(crate) fn guarded(
    conn: &Conn,
    op: &Op<'_>,
    updater: u32,
    keys: &[String],
    cmds: &[&redis::Cmd],
) -> Option<redis::Cmd> {
    let admission = op.lease.and_then(|lease| lease.admission());
    if admission.is_none() && !conn.is_cluster() {
        return None;
    }
    let (worker, token) = admission
        .map(|a| (a.worker.clone(), a.token.clone()))
        .unwrap_or_default();
    let mut eval = redis::cmd("EVAL");
    eval.arg(GUARDED_WRITE)
        .arg(2 + keys.len())
        .arg(op.keys.admission())
        .arg(op.keys.applied())
        .arg(keys)
        .arg(worker)
        .arg(token)
        .arg(updater)
        .arg(op.write);
    for cmd in cmds {
        let words: Vec<&[u8]> = cmd
            .args_iter()
            .filter_map(|arg| match arg {
                redis::Arg::Simple(word) => Some(word),
                _ => None,
            })
            .collect();
        eval.arg(words.len()).arg(words);
    }
    Some(eval)
}

/// `SET key value KEEPTTL` (the key keeps its safety-net expiry, `keys::SAFETY_TTL`), guarded
/// where it must be ([`guarded`]): how every strategy that writes a copy back writes it.
pub(crate) fn write_back(
    conn: &Conn,
    op: &Op<'_>,
    updater: u32,
    key: &str,
    value: impl redis::ToRedisArgs,
) -> redis::Cmd {
    let mut set = redis::cmd("SET");
    set.arg(key).arg(value).arg("KEEPTTL");
    guarded(conn, op, updater, &[key.to_owned()], &[&set]).unwrap_or(set)
}

/// Sends a write made by [`write_back`] on its own: a resend of one Redis had already made (on a
/// cluster) is made once, and counts as made.
pub(crate) async fn send_write(conn: &mut Conn, write: redis::Cmd) -> Result<(), UpdateError> {
    match write.query_async::<()>(conn).await {
        Err(e) if already(&e) => Ok(()),
        other => other.map_err(UpdateError::during_write),
    }
}

const GUARDED_WRITE: &str = include_str!("../../assets/guarded_write.lua");

/// Whether Redis said a guarded write was made before: a resend of an update already applied.
pub(crate) fn already(e: &redis::RedisError) -> bool {
    e.code() == Some("ALREADY")
}

/// The guard's error `code` (FENCED, ALREADY) in a transaction's EXEC reply, if it is there.
pub(crate) fn guard_said(exec: &redis::Value, code: &str) -> bool {
    match exec {
        redis::Value::Array(replies) => replies
            .iter()
            .any(|reply| matches!(reply, redis::Value::ServerError(e) if e.code() == code)),
        _ => false,
    }
}

/// The worker and token a script's own admission check takes (`update_segment.lua`,
/// `cas_write.lua`, `fenced_write.lua`); empty outside a worker, which skips the check.
pub(crate) fn admission_args(op: &Op<'_>) -> (String, String) {
    op.lease
        .and_then(|lease| lease.admission())
        .map(|a| (a.worker.clone(), a.token.clone()))
        .unwrap_or_default()
}

/// After optimistic attempt number `retries` met a conflict: gives up past `--max-retries`,
/// else reports the retry and backs off (at most the think time, or 20 ms).
pub(crate) async fn after_conflict(
    retries: u32,
    tuning: Tuning,
    op: &Op<'_>,
    probe: &mut Probe,
    why: &str,
) -> Result<(), UpdateError> {
    if retries > tuning.max_retries {
        return Err(UpdateError::gave_up(tuning.max_retries, why));
    }
    if op.out_of_time(probe) {
        return Err(UpdateError::gave_up(retries - 1, "the run's time was up"));
    }
    probe
        .retry(retries, crate::event::RetryReason::Conflict)
        .await;
    if !probe.scheduled() {
        let pause = pause(tuning.backoff, retries, CONFLICT_BACKOFF_CAP.max(op.think));
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(())
}

/// How often a script is loaded again when it keeps vanishing (SCRIPT FLUSH, a restart).
const SCRIPT_RELOADS: u32 = 5;

/// Runs a script, loading it again when Redis lost it. `Script::invoke_async` loads it once on
/// NOSCRIPT; a second flush between that load and the call would still fail. A NOSCRIPT reply
/// means the script did not run, so calling again is safe.
pub(crate) async fn invoke<T: redis::FromRedisValue>(
    invocation: &redis::ScriptInvocation<'_>,
    conn: &mut Conn,
) -> redis::RedisResult<T> {
    let mut reloads = 0;
    loop {
        match invocation.invoke_async(conn).await {
            Err(e)
                if reloads < SCRIPT_RELOADS
                    && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                reloads += 1;
            }
            other => return other,
        }
    }
}

/// How many times a write whose reply never came is looked up, each lookup waiting `--timeout`:
/// a server that stays silent for longer leaves the outcome unknown.
const RESOLVE_TRIES: u32 = 5;

/// Whether a script write whose reply never came (`e`) was applied, as the run's applied-write
/// hash ([`Keys::applied`]) says: the script records the updater's write id there as it writes.
/// After a timeout the lookup goes on the connection that sent the write, and Redis answers a
/// connection's commands in order, so the write has run by the time the lookup is answered: the
/// answer is exact either way. After a dropped connection only "applied" is certain (the write
/// might still be on its way in). `None` where nothing can tell (README "Safety").
pub(crate) async fn resolve(
    conn: &mut Conn,
    op: &Op<'_>,
    updater: u32,
    e: &redis::RedisError,
) -> Option<bool> {
    let ordered = e.is_timeout();
    if op.write == 0 || !(ordered || e.is_io_error() || e.is_connection_dropped()) {
        return None;
    }
    // Under `--wait-replicas` applied is not enough: the record says the primary has the write,
    // not that the replicas do (README "Failover").
    if conn.waits_for_replicas() {
        return None;
    }
    for _ in 0..RESOLVE_TRIES {
        let last: redis::RedisResult<Option<u64>> = redis::cmd("HGET")
            .arg(op.keys.applied())
            .arg(updater)
            .query_async(conn)
            .await;
        match last {
            Ok(last) if last == Some(op.write) => return Some(true),
            Ok(_) => return ordered.then_some(false),
            Err(e) if e.is_timeout() => continue,
            Err(_) => return None,
        }
    }
    None
}

/// The longest pause `--backoff exp` makes before an optimistic retry. Long enough that a
/// thousand updaters who collided on one journey spread out over more time than their commits
/// take together, so most of them find the journey quiet on their next try (README
/// "Performance": with a 20 ms cap, `watch` at 1,000 updaters made 38 updates/s at 480 retries
/// per update; with 200 ms, about 1,400/s at 9).
const CONFLICT_BACKOFF_CAP: Duration = Duration::from_millis(200);

/// The pause before retry `attempt` (1-based) under `policy` (`--backoff`): none, or
/// [`backoff`].
pub(crate) fn pause(policy: crate::workload::Backoff, attempt: u32, cap: Duration) -> Duration {
    match policy {
        crate::workload::Backoff::None => Duration::ZERO,
        crate::workload::Backoff::Exp => backoff(attempt, cap),
    }
}

/// A pause before retry `attempt` (1-based): exponential with full jitter, so updaters that
/// collided don't collide again in step; capped so nobody sleeps through the run.
pub(crate) fn backoff(attempt: u32, cap: Duration) -> Duration {
    let ceiling = Duration::from_micros(200)
        .saturating_mul(1 << attempt.min(10))
        .min(cap);
    ceiling.mul_f64(rand::rng().random::<f64>())
}

/// One update to make: the seed's `UpdateSegmentStatusAsync(journeyId, segmentId, newStatus)`,
/// with the segment already found in the journey's layout.
pub struct Op<'a> {
    pub keys: &'a Keys,
    pub journey_id: &'a str,
    /// The journey the run seeded, if racelab seeded it: a read that differs from it only in
    /// statuses and counts is kept as those alone ([`JourneyCopy`]).
    pub journey: Option<&'a std::sync::Arc<Journey>>,
    /// Write skew (`--scenario write-skew`): write only if no other segment is Boarding, as
    /// the strategy reads the journey.
    pub invariant: bool,
    /// The journey's segment ids, for the strategies that read other segments than their own
    /// to check the invariant (`hash`, `keys`).
    pub segment_ids: &'a [String],
    pub segment_id: &'a str,
    pub status: &'a str,
    /// The pause between reading and writing.
    pub think: Duration,
    /// Past this time (since the release), an update stops retrying: a timed run (`bench`)
    /// must end, however hot the contention.
    pub retry_until: Option<Duration>,
    /// A worker's hold on the run (`racelab worker`): once it lapsed, nothing more is written.
    pub lease: Option<&'a Lease>,
    /// This update's name in what it writes, unique in the run ([`Op::write_id`]; 0 writes
    /// none), so that a later read can say whose write it saw (README "History").
    pub write: u64,
}

impl Op<'_> {
    /// Update `round` of updater `updater` (both 0-based) of `updaters`: 1, 2, … in the order
    /// updaters and rounds are numbered, never 0 (which is the state as seeded).
    pub fn write_id(updaters: u32, updater: u32, round: u32) -> u64 {
        u64::from(round) * u64::from(updaters) + u64::from(updater) + 1
    }

    fn out_of_time(&self, probe: &Probe) -> bool {
        self.retry_until.is_some_and(|until| probe.now() >= until)
    }
}

/// How an update ended when Redis answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateStatus {
    Applied,
    /// The invariant said no (write skew: another segment is Boarding): nothing written.
    Declined,
    JourneyNotFound,
    SegmentNotFound,
}

/// An update that did not end with an answer.
#[derive(Debug, Clone)]
pub struct UpdateError {
    pub outcome: Outcome,
    pub reason: String,
    /// The run cannot go on (the server refuses the commands, the data is not racelab's).
    pub fatal: bool,
    /// Stopped retrying after `--max-retries`.
    pub gave_up: bool,
    /// Redis did not answer (timeout, dropped or refused connection), as opposed to refusing.
    pub unreachable: bool,
}

impl UpdateError {
    /// A failure before anything was written: the update certainly did not happen.
    pub fn before_write(e: redis::RedisError) -> UpdateError {
        UpdateError {
            fatal: is_fatal(&e),
            outcome: Outcome::NotApplied,
            reason: describe(&e),
            gave_up: false,
            unreachable: is_unreachable(&e),
        }
    }

    /// A failure of the write itself. An error reply means Redis refused the command; a timeout
    /// or a dropped connection means the write may have landed, and nobody can say.
    pub fn during_write(e: redis::RedisError) -> UpdateError {
        if e.code() == Some("FENCED") {
            return UpdateError::fenced();
        }
        let unknown = e.is_timeout() || e.is_io_error() || e.is_connection_dropped();
        UpdateError {
            unreachable: is_unreachable(&e),
            fatal: is_fatal(&e),
            outcome: if unknown {
                Outcome::Unknown
            } else {
                Outcome::NotApplied
            },
            reason: describe(&e),
            gave_up: false,
        }
    }

    /// A worker's lease on the run lapsed before the write: nothing was written.
    pub fn lease_lapsed() -> UpdateError {
        UpdateError {
            outcome: Outcome::NotApplied,
            reason: "this worker's lease on the run lapsed: it writes nothing more".to_owned(),
            // The worker leaves the run (see `crate::crew::worker`); the other workers go on.
            fatal: false,
            gave_up: false,
            unreachable: false,
        }
    }

    /// Redis refused a worker's write: the coordinator had taken the worker for gone.
    pub fn fenced() -> UpdateError {
        UpdateError {
            outcome: Outcome::NotApplied,
            reason: "Redis refused this worker's write: the coordinator had taken it for gone and struck it off the run".to_owned(),
            fatal: false,
            gave_up: false,
            unreachable: false,
        }
    }

    pub fn corrupt(reason: String) -> UpdateError {
        UpdateError {
            outcome: Outcome::NotApplied,
            reason,
            fatal: true,
            gave_up: false,
            unreachable: false,
        }
    }

    pub fn gave_up(retries: u32, why: &str) -> UpdateError {
        UpdateError {
            outcome: Outcome::NotApplied,
            reason: format!("gave up after {retries} retries ({why})"),
            fatal: false,
            gave_up: true,
            unreachable: false,
        }
    }
}

/// Whether a segment other than `own` is Boarding: write skew's invariant allows one.
pub(crate) fn boarding_elsewhere(journey: &Journey, own: usize) -> bool {
    journey
        .segments
        .iter()
        .enumerate()
        .any(|(i, s)| i != own && s.status == crate::workload::BOARDING)
}

/// The journey as a read found it, and the updater's segment in it, for the strategies that
/// read the whole document and write it back. Kept compactly ([`JourneyCopy`]): an updater holds
/// it through its think time.
pub(crate) struct ReadJourney {
    pub journey: JourneyCopy,
    pub segment: usize,
}

impl ReadJourney {
    /// Parses `doc` (read from `key`) and finds the op's segment. `Ok(Err(status))` when the
    /// segment is missing.
    pub fn parse(
        key: &str,
        doc: &str,
        op: &Op<'_>,
    ) -> Result<Result<ReadJourney, UpdateStatus>, UpdateError> {
        let journey: Journey = serde_json::from_str(doc)
            .map_err(|e| UpdateError::corrupt(format!("{key} does not hold a journey ({e})")))?;
        Ok(match journey.segment_index(op.segment_id) {
            // Write skew: the invariant, checked on what was read.
            Some(segment) if op.invariant && boarding_elsewhere(&journey, segment) => {
                Err(UpdateStatus::Declined)
            }
            Some(segment) => Ok(ReadJourney {
                journey: JourneyCopy::keep(journey, op.journey),
                segment,
            }),
            None => Err(UpdateStatus::SegmentNotFound),
        })
    }

    pub fn seen(&self) -> crate::event::Seen {
        let (status, count) = self.journey.state(self.segment);
        crate::event::Seen {
            status: crate::journey::intern_status(status),
            count,
            write: self.journey.write(),
        }
    }

    /// Applies the op to the copy and returns the document to write and the segment's new count.
    pub fn apply(mut self, op: &Op<'_>) -> (String, u64) {
        let count = self.journey.state(self.segment).1 + 1;
        self.journey.set(self.segment, op.status, count);
        self.journey.set_write(op.write);
        (self.journey.to_json(), count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_strategys_file_names_it_as_dash_s_parses_it() {
        for &strategy in Strategy::ALL {
            let parsed = Strategy::parse(&strategy.name().to_uppercase());
            assert_eq!(parsed, Ok(strategy), "{}", strategy.name());
            assert!(STRATEGY_HELP.contains(strategy.name()));
            assert!(!strategy.how().is_empty());
            let facts = strategy.facts();
            assert_eq!(
                (facts.looks_right.is_some(), facts.shown_by.is_some()),
                (facts.wrong.is_some(), facts.wrong.is_some()),
                "{}: a wrong fix says why it looks right, why it is wrong and what shows it",
                strategy.name()
            );
        }
        let wrong: Vec<&str> = Strategy::ALL
            .iter()
            .filter(|s| s.is_wrong_fix())
            .map(|s| s.name())
            .collect();
        assert_eq!(wrong, ["multi", "watch-other", "del-unlock", "local-mutex"]);
        assert!(STRATEGY_HELP.contains("wrong fixes"));
    }
}
