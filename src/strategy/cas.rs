//! `cas`: optimistic versioning, the original challenge's published fix done atomically. The
//! journey carries a version (its own key, beside the document); an updater reads both, thinks,
//! and writes through a compare-and-set script (`assets/cas_write.lua`) that only writes if the
//! version is still the one it read, and stamps the next. On a conflict it reads again.

use std::sync::LazyLock;

use crate::target::Conn;
use redis::Script;

use super::{
    Context, Facts, Kind, Op, ReadJourney, Storage, UpdateError, UpdateStatus, after_conflict,
    invoke,
};
use crate::error::Error;
use crate::event::Probe;
use crate::event::WriteScope;
use crate::schedule::{Role, Step};
use crate::workload::Tuning;

static CAS_WRITE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../assets/cas_write.lua")));

pub struct Cas {
    conn: Conn,
    tuning: Tuning,
}

impl Kind for Cas {
    const FACTS: Facts = Facts {
        name: "cas",
        how: "read version + journey, think, compare-and-set script; retry",
        steps: &["read (MGET version, journey)", "compare-and-set (EVALSHA)"],
        storage: Storage::Document,
        scope: WriteScope::Journey,
        cjson: false,
        loses: super::never_loses,
        looks_right: None,
        wrong: None,
        shown_by: None,
        expires: false,
    };

    async fn new(cx: &Context<'_>) -> Result<Cas, Error> {
        Ok(Cas {
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
            if let Some(status) = self.attempt(op, probe).await? {
                return Ok(status);
            }
            retries += 1;
            after_conflict(retries, self.tuning, op, probe, "the version kept changing").await?;
        }
    }
}

impl Cas {
    /// One read and compare-and-set. `Ok(None)`: the version moved on, a conflict.
    async fn attempt(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<Option<UpdateStatus>, UpdateError> {
        let key = op.keys.journey();
        let version_key = op.keys.version();
        probe
            .reading(|| Step::new(Role::Read, "MGET version journey"))
            .await;
        // One round trip for both: they share the journey's hash tag, so this holds on a cluster.
        let (version, doc): (Option<String>, Option<String>) = redis::cmd("MGET")
            .arg(&version_key)
            .arg(&key)
            .query_async(&mut self.conn)
            .await
            .map_err(UpdateError::before_write)?;
        let (Some(version), Some(doc)) = (version, doc) else {
            return Ok(Some(UpdateStatus::JourneyNotFound));
        };
        let read = match ReadJourney::parse(&key, &doc, op)? {
            Ok(read) => read,
            Err(missing) => return Ok(Some(missing)),
        };
        // Through the think time the updater holds its compact copy, not the document it read.
        drop(doc);
        probe.read(Some(read.seen()), version.parse().ok()).await;
        super::think(op).await?;
        let (doc, count) = read.apply(op);
        probe
            .writing(|| {
                Step::new(
                    Role::WriteBack,
                    format!("EVALSHA cas_write (SET journey if the version is still {version})"),
                )
            })
            .await;
        let (worker, token) = super::admission_args(op);
        let mut invocation = CAS_WRITE.key(&version_key);
        invocation
            .key(&key)
            .key(op.keys.applied())
            .key(op.keys.admission())
            .arg(&version)
            .arg(doc)
            .arg(probe.updater)
            .arg(op.write)
            .arg(worker)
            .arg(token);
        let new_version: i64 = match invoke(&invocation, &mut self.conn).await {
            Ok(version) => version,
            // No reply: the applied-write record tells whether it was written.
            Err(e) => match super::resolve(&mut self.conn, op, probe.updater, &e).await {
                Some(true) => {
                    probe.answered(|| {
                        "no reply, but the applied-write record has this write".into()
                    });
                    probe.wrote(count);
                    return Ok(Some(UpdateStatus::Applied));
                }
                // It ran and found the version moved on: a conflict like any other.
                Some(false) => 0,
                None => return Err(UpdateError::during_write(e)),
            },
        };
        if new_version == -1 {
            // A resend of a write that had been made: made once, as it should be.
            probe.answered(|| "-1: made before, not again".into());
            return Ok(Some(UpdateStatus::Applied));
        }
        if new_version == 0 {
            probe.answered(|| "0: conflict, the version moved on since the read".into());
            return Ok(None);
        }
        probe.answered(|| format!("OK, version {new_version}").into());
        probe.wrote(count);
        Ok(Some(UpdateStatus::Applied))
    }
}
