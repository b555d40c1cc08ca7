//! `del-unlock`, a wrong fix (README "Fixes that look right"): `lock`'s `SET lock NX PX ttl` and
//! read-modify-write, released with a plain `DEL lock` instead of a compare-and-delete. While the
//! work fits in the ttl it holds like `lock`. Once a holder's lock expires under it, the next
//! updater takes the lock, and the old holder's DEL then deletes that *new* holder's lock: a third
//! updater takes it too, and two holders read and write at once. It loses wherever `lock` does,
//! and more.

use crate::keys::Keys;
use crate::target::{Conn, Target};

use super::{Context, Facts, Kind, Op, Storage, UpdateError, UpdateStatus};
use crate::error::Error;
use crate::event::{Probe, WriteScope};
use crate::schedule::{Role, Step};
use crate::workload::Tuning;

pub struct DelUnlock {
    conn: Conn,
    tuning: Tuning,
}

impl Kind for DelUnlock {
    const FACTS: Facts = Facts {
        name: "del-unlock",
        how: "SET lock NX PX ttl, read-modify-write, DEL lock to unlock",
        steps: &[
            "acquire (SET NX PX)",
            "read (GET)",
            "write (SET)",
            "release (DEL lock)",
        ],
        storage: Storage::Document,
        scope: WriteScope::Journey,
        cjson: false,
        // Whenever a lock expires under its holder, `lock` already loses; the DEL adds more
        // losses there, and none where no lock expires.
        loses: super::lock::lock_loses,
        looks_right: Some(
            "it is the lock strategy: only the holder reads and writes, and the holder unlocks when done",
        ),
        wrong: Some(
            "DEL does not ask whose lock it is: a holder whose lock expired deletes the next holder's lock, and two updaters hold it at once",
        ),
        shown_by: Some(
            "racelab run -s del-unlock -n 3 --lock-ttl 100ms --schedule \"1 1 t 2 1 1 3 2 3 2 3\"",
        ),
        expires: true,
    };

    async fn prepare(target: &Target, conn: &mut Conn, keys: &Keys) -> Result<(), Error> {
        try_release(target, conn, keys).await
    }

    async fn new(cx: &Context<'_>) -> Result<DelUnlock, Error> {
        Ok(DelUnlock {
            conn: cx.shared.clone(),
            tuning: cx.tuning,
        })
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        // The token is never looked at again: that is the bug.
        let _token = super::lock::acquire(&mut self.conn, op, probe, self.tuning, "").await?;
        let result = super::naive::read_modify_write(&mut self.conn, op, probe).await;
        release(&mut self.conn, op, probe).await;
        result
    }
}

/// `DEL lock`, whoever holds it now (a step of its own). Best effort, like `lock`'s release.
async fn release(conn: &mut Conn, op: &Op<'_>, probe: &Probe) {
    probe
        .step(|| Step::new(Role::Unlock, "DEL lock (whoever holds it)"))
        .await;
    let deleted: redis::RedisResult<i64> = redis::cmd("DEL")
        .arg(op.keys.lock())
        .query_async(conn)
        .await;
    probe.answered(|| match deleted {
        Ok(1) => "1: deleted".into(),
        Ok(_) => "0: no lock left to delete (it expired)".into(),
        Err(e) => format!("error: {}", crate::redis_errors::describe(&e)).into(),
    });
}

/// Takes the journey's lock and DELs it once, before the run: a user allowed `SET` but not `DEL`
/// would otherwise see every release fail in silence and every waiter sit out the whole ttl.
async fn try_release(target: &Target, conn: &mut Conn, keys: &Keys) -> Result<(), Error> {
    let taken: Option<String> = redis::cmd("SET")
        .arg(keys.lock())
        .arg("racelab-prepare")
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
    let _: i64 = redis::cmd("DEL")
        .arg(keys.lock())
        .query_async(conn)
        .await
        .map_err(|e| target.refused(&e))?;
    Ok(())
}
