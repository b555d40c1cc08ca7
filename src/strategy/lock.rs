//! `lock`: a Redis lock around the seed's read-modify-write. `SET <lock> <token> NX PX <ttl>`
//! takes it, a compare-and-delete script (`assets/unlock.lua`) releases it only if it is still
//! ours. It holds while the work takes less than the ttl; once the think time passes the ttl, the
//! lock expires under its holder, the next updater takes it and reads, and the old holder's late
//! write erases what the next one is about to build on: updates are lost again. That is the point
//! of Kleppmann's critique of Redis locks, and `fenced` is its fix.

use std::sync::LazyLock;
use std::time::Duration;

use crate::target::Conn;
use rand::Rng;
use redis::AsyncCommands;
use redis::Script;

use super::{Op, ReadJourney, Tuning, UpdateError, UpdateStatus, backoff, invoke};
use crate::event::{Probe, RetryReason};

static UNLOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../assets/unlock.lua")));

/// How long a waiter sleeps at most between tries for a busy lock.
const LOCK_POLL_CAP: Duration = Duration::from_millis(5);

pub struct Lock {
    conn: Conn,
    tuning: Tuning,
}

impl Lock {
    pub fn new(conn: Conn, tuning: Tuning) -> Lock {
        Lock { conn, tuning }
    }

    pub async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        let token = acquire(&mut self.conn, op, probe, self.tuning).await?;
        let result = read_modify_write(&mut self.conn, op, probe).await;
        release(&mut self.conn, op, &token).await;
        result
    }
}

/// Takes the journey's lock, waiting while someone else holds it. Returns our token.
pub(super) async fn acquire(
    conn: &mut Conn,
    op: &Op<'_>,
    probe: &mut Probe,
    tuning: Tuning,
) -> Result<String, UpdateError> {
    // Random, so only the holder can release: a late holder's unlock can't free another's lock.
    let token = format!("{:016x}", rand::rng().random::<u64>());
    let ttl_ms = tuning.lock_ttl.as_millis().max(1) as u64;
    let mut retries = 0;
    loop {
        let taken: Option<String> = redis::cmd("SET")
            .arg(op.keys.lock())
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(conn)
            .await
            .map_err(UpdateError::before_write)?;
        if taken.is_some() {
            return Ok(token);
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
        probe.retry(retries, RetryReason::LockBusy).await;
        tokio::time::sleep(backoff(retries, LOCK_POLL_CAP)).await;
    }
}

/// Releases the lock if it is still ours. Best effort: if this fails the ttl frees it, and the
/// update's outcome is already decided.
pub(super) async fn release(conn: &mut Conn, op: &Op<'_>, token: &str) {
    let mut invocation = UNLOCK.key(op.keys.lock());
    invocation.arg(token);
    let _: Result<i64, _> = invoke(&invocation, conn).await;
}

/// The seed's read-modify-write, as done under the lock.
async fn read_modify_write(
    conn: &mut Conn,
    op: &Op<'_>,
    probe: &mut Probe,
) -> Result<UpdateStatus, UpdateError> {
    let key = op.keys.journey();
    probe.reading().await;
    let doc: Option<String> = conn.get(&key).await.map_err(UpdateError::before_write)?;
    let Some(doc) = doc else {
        return Ok(UpdateStatus::JourneyNotFound);
    };
    let read = match ReadJourney::parse(&key, &doc, op.segment_id)? {
        Ok(read) => read,
        Err(missing) => return Ok(missing),
    };
    probe.read(Some(read.seen()), None).await;
    super::think(op.think).await;
    let (doc, count) = read.apply(op.status);
    probe.writing().await;
    let () = conn
        .set(&key, doc)
        .await
        .map_err(UpdateError::during_write)?;
    probe.wrote(count);
    Ok(UpdateStatus::Applied)
}
