//! `lock`: a Redis lock around the seed's read-modify-write. `SET <lock> <token> NX PX <ttl>`
//! takes it, a compare-and-delete script (`assets/unlock.lua`) releases it only if it is still
//! ours. It holds while the work takes less than the ttl; once the think time passes the ttl, the
//! lock expires under its holder, the next updater takes it and reads, and the old holder's late
//! write erases what the next one is about to build on: updates are lost again. That is the point
//! of Kleppmann's critique of Redis locks, and `fenced` is its fix.

use std::sync::LazyLock;
use std::time::Duration;

use crate::keys::Keys;
use crate::target::{Conn, Target};
use rand::Rng;
use redis::AsyncCommands;
use redis::Script;

use super::{Context, Facts, Kind, Op, Storage, UpdateError, UpdateStatus, invoke};
use crate::error::Error;
use crate::event::WriteScope;
use crate::event::{Probe, RetryReason};
use crate::schedule::{Role, Step};
use crate::workload::RaceShape;
use crate::workload::Tuning;

static UNLOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../assets/unlock.lua")));

/// How far the think time must be from the lock's ttl for the outcome to be forced (README
/// "Strategies"): the holder's round trips, a waiter's poll interval (at most
/// [`LOCK_POLL_CAP`]) and scheduling all fit in it.
pub const LOCK_MARGIN: Duration = Duration::from_millis(20);

/// The lock only excludes while it lives: past its ttl, the next holder reads a copy the old
/// holder is about to overwrite (Kleppmann's critique of Redis locks). The holder's work is its
/// think time plus a few round trips, and a waiter polls for the lock every few milliseconds, so
/// near the ttl either can happen.
pub(super) fn lock_loses(shape: &RaceShape) -> Option<bool> {
    let longest = shape.think.mul_f64(1.0 + shape.jitter);
    if shape.updaters < 2 || longest + LOCK_MARGIN <= shape.lock_ttl {
        Some(false)
    } else if shape.think >= shape.lock_ttl + LOCK_MARGIN {
        Some(true)
    } else {
        None
    }
}

/// How long a waiter sleeps at most between tries for a busy lock.
const LOCK_POLL_CAP: Duration = Duration::from_millis(5);

pub struct Lock {
    conn: Conn,
    tuning: Tuning,
}

impl Kind for Lock {
    const FACTS: Facts = Facts {
        name: "lock",
        how: "SET lock NX PX ttl, read-modify-write, compare-and-delete unlock",
        steps: &[
            "acquire (SET NX PX)",
            "read (GET)",
            "write (SET)",
            "release (EVALSHA unlock)",
        ],
        storage: Storage::Document,
        scope: WriteScope::Journey,
        cjson: false,
        loses: lock_loses,
        looks_right: None,
        wrong: None,
        shown_by: None,
        expires: true,
    };

    async fn prepare(target: &Target, conn: &mut Conn, keys: &Keys) -> Result<(), Error> {
        try_release(target, conn, keys).await
    }

    async fn new(cx: &Context<'_>) -> Result<Lock, Error> {
        Ok(Lock {
            conn: cx.shared.clone(),
            tuning: cx.tuning,
        })
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        let token = acquire(&mut self.conn, op, probe, self.tuning, "").await?;
        let result = super::naive::read_modify_write(&mut self.conn, op, probe).await;
        release(&mut self.conn, op, &token, probe).await;
        result
    }
}

/// Takes the journey's lock, waiting while someone else holds it. Returns our token. `then`
/// names what the caller sends right after, in the same step (`fenced`'s INCR).
pub(super) async fn acquire(
    conn: &mut Conn,
    op: &Op<'_>,
    probe: &mut Probe,
    tuning: Tuning,
    then: &'static str,
) -> Result<String, UpdateError> {
    // Random, so only the holder can release: a late holder's unlock can't free another's lock.
    let token = format!("{:016x}", rand::rng().random::<u64>());
    let ttl_ms = tuning.lock_ttl.as_millis().max(1) as u64;
    let mut retries = 0;
    loop {
        // Each try for the lock is a step of its own: in a schedule, a busy lock is retried
        // when the updater's turn comes again.
        probe
            .step(|| Step::new(Role::Lock, format!("SET lock NX PX {ttl_ms}{then}")))
            .await;
        let taken: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(op.keys.lock())
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(conn)
            .await;
        match taken {
            Ok(Some(_)) => {
                probe.answered(|| "OK: the lock is taken".into());
                return Ok(token);
            }
            Ok(None) => probe.answered(|| "nil: the lock is busy".into()),
            // No answer: the SET may have taken the lock all the same. The token says: if the
            // lock holds ours, it is ours; if not, nothing of ours is left behind.
            Err(e) if e.is_timeout() || e.is_io_error() || e.is_connection_dropped() => {
                let holder: Option<String> = conn
                    .get(op.keys.lock())
                    .await
                    .map_err(UpdateError::before_write)?;
                if holder.as_deref() == Some(token.as_str()) {
                    return Ok(token);
                }
            }
            Err(e) => return Err(UpdateError::before_write(e)),
        }
        if retries == 0 {
            probe.waiting_for_lock().await;
        }
        retries += 1;
        if retries > tuning.max_retries {
            return Err(UpdateError::gave_up(
                tuning.max_retries,
                "the lock stayed busy",
            ));
        }
        if op.out_of_time(probe) {
            return Err(UpdateError::gave_up(retries - 1, "the run's time was up"));
        }
        probe.retry(retries, RetryReason::LockBusy).await;
        if !probe.scheduled() {
            let pause = super::pause(tuning.backoff, retries, LOCK_POLL_CAP);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Releases the lock if it is still ours (a step of its own). Best effort: if this fails the
/// ttl frees it, and the update's outcome is already decided.
pub(super) async fn release(conn: &mut Conn, op: &Op<'_>, token: &str, probe: &Probe) {
    probe
        .step(|| {
            Step::new(
                Role::Unlock,
                "EVALSHA unlock (DEL lock if it holds our token)",
            )
        })
        .await;
    let mut invocation = UNLOCK.key(op.keys.lock());
    invocation.arg(token);
    let released: Result<i64, _> = invoke(&invocation, conn).await;
    probe.answered(|| match released {
        Ok(1) => "1: released".into(),
        Ok(_) => "0: not ours any more (it expired), left alone".into(),
        Err(e) => format!("error: {}", crate::redis_errors::describe(&e)).into(),
    });
}

/// Takes the journey's lock and releases it once, before the run: a user allowed `SET` but not
/// the unlock script (`EVALSHA`) or the `DEL` inside it would otherwise see every release fail
/// in silence and every waiter sit out the whole ttl. Refused here, the run does not start.
pub(super) async fn try_release(
    target: &Target,
    conn: &mut Conn,
    keys: &Keys,
) -> Result<(), Error> {
    let token = "racelab-prepare";
    let taken: Option<String> = redis::cmd("SET")
        .arg(keys.lock())
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(10_000)
        .query_async(conn)
        .await
        .map_err(|e| target.refused(&e))?;
    if taken.is_none() {
        // Someone holds a lock under this run's id: not ours to touch.
        return Ok(());
    }
    let mut invocation = UNLOCK.key(keys.lock());
    invocation.arg(token);
    let _: i64 = invoke(&invocation, conn)
        .await
        .map_err(|e| target.refused(&e))?;
    Ok(())
}
