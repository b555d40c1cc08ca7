//! `fenced`: the `lock` strategy plus a fencing token. With the lock, the updater takes the next
//! token (INCR); its write goes through a script (`assets/fenced_write.lua`) that refuses it unless
//! its token is still the newest issued. A holder whose lock expired holds an outdated token, so
//! its stale write is refused and it starts over, instead of erasing the next holder's work. The
//! same expired-lock run that makes `lock` lose updates loses none here.

use std::sync::LazyLock;

use crate::target::{Conn, Target};
use redis::AsyncCommands;
use redis::Script;

use super::lock::{acquire, release};
use super::{Context, Facts, Kind, Op, ReadJourney, Storage, UpdateError, UpdateStatus, invoke};
use crate::error::Error;
use crate::event::WriteScope;
use crate::event::{Probe, RetryReason};
use crate::schedule::{Role, Step};
use crate::workload::Tuning;

static FENCED_WRITE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../assets/fenced_write.lua")));

/// Refused writes retried before giving up (see `update`).
const FENCE_REFUSALS: u32 = 2;

pub struct Fenced {
    conn: Conn,
    tuning: Tuning,
}

impl Kind for Fenced {
    const FACTS: Facts = Facts {
        name: "fenced",
        how: "lock + INCR fencing token; a write with an old token is refused",
        steps: &[
            "acquire (SET NX PX, INCR fence)",
            "read (GET)",
            "write (EVALSHA fenced write)",
            "release (EVALSHA unlock)",
        ],
        storage: Storage::Document,
        scope: WriteScope::Journey,
        cjson: false,
        loses: super::never_loses,
        looks_right: None,
        wrong: None,
        shown_by: None,
        expires: true,
    };

    async fn prepare(
        target: &Target,
        conn: &mut Conn,
        keys: &crate::keys::Keys,
    ) -> Result<(), Error> {
        super::lock::try_release(target, conn, keys).await
    }

    async fn new(cx: &Context<'_>) -> Result<Fenced, Error> {
        Ok(Fenced {
            conn: cx.shared.clone(),
            tuning: cx.tuning,
        })
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        let mut retries = 0;
        loop {
            let lock = acquire(&mut self.conn, op, probe, self.tuning, ", then INCR fence").await?;
            let attempt = self.attempt(op, probe).await;
            release(&mut self.conn, op, &lock, probe).await;
            if let Some(result) = attempt.transpose() {
                return result;
            }
            // A refusal means our lock expired before the work was done. Fencing makes that late
            // write safe, not successful: while the work outlasts the ttl, every new holder will
            // refuse the one before it, so a few tries are all that can help. Then the update is
            // reported as not applied (a give-up), never silently lost.
            retries += 1;
            if retries > self.tuning.max_retries.min(FENCE_REFUSALS) {
                return Err(UpdateError::gave_up(
                    retries - 1,
                    "a newer lock holder's fencing token refused the write; the lock expires before the work is done, so raise --lock-ttl above the think time",
                ));
            }
            probe.retry(retries, RetryReason::Conflict).await;
            if !probe.scheduled() {
                let pause = super::pause(self.tuning.backoff, retries, op.think);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

impl Fenced {
    /// One fenced read-modify-write. `Ok(None)`: refused, a newer token was issued meanwhile.
    async fn attempt(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<Option<UpdateStatus>, UpdateError> {
        let token: u64 = self
            .conn
            .incr(op.keys.fence(), 1)
            .await
            .map_err(UpdateError::before_write)?;
        probe.answered(|| format!("OK (the lock), fencing token {token}").into());
        let key = op.keys.journey();
        probe.reading(|| Step::new(Role::Read, "GET journey")).await;
        let doc: Option<String> = self
            .conn
            .get(&key)
            .await
            .map_err(UpdateError::before_write)?;
        let Some(doc) = doc else {
            return Ok(Some(UpdateStatus::JourneyNotFound));
        };
        let read = match ReadJourney::parse(&key, &doc, op)? {
            Ok(read) => read,
            Err(missing) => return Ok(Some(missing)),
        };
        // Through the think time the updater holds its compact copy, not the document it read.
        drop(doc);
        probe.read(Some(read.seen()), Some(token)).await;
        super::think(op).await?;
        let (doc, count) = read.apply(op);
        probe
            .writing(|| {
                Step::new(
                    Role::WriteBack,
                    format!("EVALSHA fenced_write (SET journey if token {token} is the newest)"),
                )
            })
            .await;
        let (worker, admission) = super::admission_args(op);
        let mut invocation = FENCED_WRITE.key(op.keys.fence());
        invocation
            .key(&key)
            .key(op.keys.admission())
            .key(op.keys.applied())
            .arg(token)
            .arg(doc)
            .arg(worker)
            .arg(admission)
            .arg(probe.updater)
            .arg(op.write);
        let written: i64 = invoke(&invocation, &mut self.conn)
            .await
            .map_err(UpdateError::during_write)?;
        if written == -1 {
            // A resend of a write that had been made: made once, as it should be.
            probe.answered(|| "-1: made before, not again".into());
            return Ok(Some(UpdateStatus::Applied));
        }
        if written == 0 {
            probe.answered(|| "0: refused, a newer fencing token was issued".into());
            return Ok(None);
        }
        probe.answered(|| "OK".into());
        probe.wrote(count);
        Ok(Some(UpdateStatus::Applied))
    }
}
