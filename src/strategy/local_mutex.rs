//! `local-mutex`, a wrong fix (README "Fixes that look right"): the seed's read-modify-write
//! inside an in-process mutex, one per journey, shared by every updater of this process; the .NET
//! fix of wrapping `UpdateSegmentStatusAsync` in a `SemaphoreSlim(1, 1)`. In one process it holds:
//! no two updates of a journey overlap. But the mutex lives in the process's memory, and the
//! journey lives in Redis: updaters in another process (`--workers 2`, a second instance of the
//! service) take their own mutex and race this one's exactly as in `naive`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, PoisonError, Weak};

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::target::Conn;

use super::{Context, Facts, Kind, Op, Storage, UpdateError, UpdateStatus};
use crate::error::Error;
use crate::event::{Probe, RetryReason, WriteScope};
use crate::schedule::{Role, Step};
use crate::workload::{RaceShape, Tuning};

/// This process's mutexes, one per journey key (the run id is part of it, so two runs in one
/// process, such as `prove`'s schedules, never share one). Weak: a mutex lives as long as some
/// updater of its run holds it, and the map forgets it after.
static MUTEXES: LazyLock<std::sync::Mutex<HashMap<String, Weak<Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// The process's mutex for the journey under `key`.
fn mutex_for(key: &str) -> Arc<Mutex<()>> {
    let mut mutexes = MUTEXES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(mutex) = mutexes.get(key).and_then(Weak::upgrade) {
        return mutex;
    }
    mutexes.retain(|_, mutex| mutex.strong_count() > 0);
    let mutex = Arc::new(Mutex::new(()));
    mutexes.insert(key.to_owned(), Arc::downgrade(&mutex));
    mutex
}

pub struct LocalMutex {
    conn: Conn,
    tuning: Tuning,
    /// The journey key and its mutex, kept for the run so every updater finds the same one.
    mutex: Option<(String, Arc<Mutex<()>>)>,
}

impl Kind for LocalMutex {
    const FACTS: Facts = Facts {
        name: "local-mutex",
        how: "an in-process mutex per journey around GET, think, SET (a SemaphoreSlim)",
        steps: &[
            "lock (in-process mutex, no Redis command)",
            "read (GET)",
            "write (SET)",
        ],
        storage: Storage::Document,
        scope: WriteScope::Journey,
        cjson: false,
        loses: local_mutex_loses,
        looks_right: Some(
            "no two updates overlap any more, and a test in one process never loses one",
        ),
        wrong: Some(
            "the mutex is in the process and the journey is in Redis: updaters in another process (--workers 2, a second service instance) never see it",
        ),
        shown_by: Some("racelab run -s local-mutex --workers 2"),
        expires: false,
    };

    async fn new(cx: &Context<'_>) -> Result<LocalMutex, Error> {
        Ok(LocalMutex {
            conn: cx.shared.clone(),
            tuning: cx.tuning,
            mutex: None,
        })
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        let key = op.keys.journey();
        let mutex = match &self.mutex {
            Some((held, mutex)) if *held == key => mutex.clone(),
            _ => {
                let mutex = mutex_for(&key);
                self.mutex = Some((key, mutex.clone()));
                mutex
            }
        };
        let _guard = lock(mutex, op, probe, self.tuning).await?;
        super::naive::read_modify_write(&mut self.conn, op, probe).await
    }
}

/// Takes the process's mutex for the journey. Free running, an updater waits in line (a tokio
/// mutex is fair, like `SemaphoreSlim.WaitAsync`). In a scheduled run every try is a step of its
/// own, as a busy Redis lock is in `lock`: an updater blocked between two gates would stop the
/// schedule, so a busy try gives its turn back and retries when its turn comes again.
async fn lock(
    mutex: Arc<Mutex<()>>,
    op: &Op<'_>,
    probe: &mut Probe,
    tuning: Tuning,
) -> Result<OwnedMutexGuard<()>, UpdateError> {
    let mut retries = 0;
    loop {
        probe
            .step(|| Step::new(Role::Lock, "lock the process's mutex (no Redis command)"))
            .await;
        match mutex.clone().try_lock_owned() {
            Ok(guard) => {
                probe.answered(|| "taken".into());
                return Ok(guard);
            }
            Err(_) if !probe.scheduled() => {
                probe.waiting_for_lock().await;
                return match op.retry_until {
                    // A timed run (`bench`) must end, however long the line.
                    Some(until) => {
                        tokio::time::timeout(until.saturating_sub(probe.now()), mutex.lock_owned())
                            .await
                            .map_err(|_| UpdateError::gave_up(0, "the run's time was up"))
                    }
                    None => Ok(mutex.lock_owned().await),
                };
            }
            Err(_) => probe.answered(|| "busy: another updater of this process holds it".into()),
        }
        if retries == 0 {
            probe.waiting_for_lock().await;
        }
        retries += 1;
        if retries > tuning.max_retries {
            return Err(UpdateError::gave_up(
                tuning.max_retries,
                "the process's mutex stayed busy",
            ));
        }
        probe.retry(retries, RetryReason::LockBusy).await;
    }
}

/// Within one process the mutex makes the read-modify-write exclusive: nothing is lost. Across
/// processes each runs its share one update at a time, and the shares race each other as
/// `naive`'s updaters do. The workers are released by one barrier, but each process wakes on its
/// own schedule: a loss is forced only when the think time is well above that spread.
fn local_mutex_loses(shape: &RaceShape) -> Option<bool> {
    if shape.processes < 2 || shape.updaters < 2 {
        Some(false)
    } else if shape.think >= CROSS_PROCESS_THINK {
        Some(true)
    } else {
        None
    }
}

/// The think time from which updaters in two processes are forced to overlap (README
/// "Strategies"): the first holder in each process reads at its release and writes a think time
/// later, and the processes' releases are a few milliseconds apart at worst.
pub const CROSS_PROCESS_THINK: std::time::Duration = std::time::Duration::from_millis(10);
