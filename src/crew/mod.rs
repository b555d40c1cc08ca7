//! A crew of workers: a run's updaters racing from several processes or hosts, as the journey
//! service's instances do in production (`racelab worker`, `racelab run --workers K`).
//!
//! Everything goes through the run's own Redis, under `<prefix>:crew:{crew}:` ([`CrewKeys`]):
//! - a worker puts its card (host, pid) under its id, renews it every second, and queues its id
//!   in the lobby ([`worker`]);
//! - a coordinator claims K of them (a script sets the card's `session` only if the card is alive
//!   and unclaimed) and keeps its own session key alive while it lives;
//! - for each run it sends a job on the session's control stream: the workload and each worker's
//!   share of the updaters;
//! - each worker prepares its share and says `ready` on the run's events stream; when every
//!   worker is ready the coordinator sends `go`, and the workers, all blocked reading the control
//!   stream, wake together and release their updaters (the barrier);
//! - workers send their updaters' events in batches on the events stream and `end` when their
//!   share is done; the coordinator feeds them to the same tally as local events;
//! - a worker whose card expired has vanished: what its updaters had in flight is unknown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::{AsyncCommands, Script};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::{RaceOutcome, RemoteUpdaters};
use crate::error::Error;
use crate::event::Event;
use crate::keys::{CrewKeys, Keys};
use crate::lease::{RENEW_EVERY, TTL};
use crate::redis_errors::describe;
use crate::roster::WorkerShare;
use crate::strategy::Strategy;
use crate::target::{Conn, Connector, Target};
use crate::workload::Workload;

mod card;
mod message;
mod race;
pub mod worker;

pub use message::CrewSecret;
use message::{Assignment, CONTROL_TTL, send, send_naming};
pub(crate) use message::{Control, Job, parse_control};
use race::Race;

/// How often a waiting side polls (a coordinator its lobby, a worker its card).
pub(crate) const POLL: Duration = Duration::from_millis(100);

static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../assets/claim_worker.lua")));

/// Who runs which updaters in a run: each worker's assignment beside the worker.
type Shares = Vec<(Assignment, Member)>;

#[derive(Debug, Clone)]
struct Member {
    id: String,
    name: String,
    host: String,
    pid: u32,
    /// It vanished or left: later runs go to the others.
    gone: bool,
}

/// The workers a coordinator claimed for its session. Shared by every run of the session.
pub struct Crew {
    keys: CrewKeys,
    session: String,
    conn: Conn,
    connector: Connector,
    timeout: Duration,
    cluster: bool,
    /// How many workers the session asked for.
    wanted: usize,
    /// `--join-timeout`: how long workers may take to join, and to get ready for a run.
    wait: Duration,
    /// Everyone who joined, in order; vanished ones stay listed (their `wN` is not reused).
    members: Mutex<Vec<Member>>,
    /// Say on stderr who joins later (not under a full-screen TUI).
    announce: AtomicBool,
    /// The share [`Crew::plan`] announced for the next run of this many updaters: that run
    /// takes it as it is, so the lanes a screen tagged from the plan are the ones that run.
    planned: Mutex<Option<(u32, Shares)>>,
    renewal: tokio::task::JoinHandle<()>,
    /// Signs what the crew is told (`--crew-secret`).
    secret: Option<CrewSecret>,
}

impl std::fmt::Debug for Crew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crew")
            .field("session", &self.session)
            .field("members", &self.members())
            .finish_non_exhaustive()
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        // Without renewal the session expires and its workers go back to waiting.
        self.renewal.abort();
    }
}

/// How to start a worker against `target`, for the coordinator's invitation.
pub fn worker_command(target: &Target, prefix: &str) -> String {
    let place = if target.is_cluster() {
        format!("--cluster {}", target.display())
    } else {
        format!("--redis-url {}", target.display())
    };
    let prefix = if prefix == "racelab" {
        String::new()
    } else {
        format!(" --key-prefix {prefix}")
    };
    format!("racelab worker {place}{prefix}")
}

impl Crew {
    /// Waits until `count` workers have joined (claiming each from the lobby), for at most
    /// `wait`. Says on stderr how to start them, and who joined.
    pub async fn gather(
        target: &Target,
        prefix: &str,
        count: u32,
        wait: Duration,
        secret: Option<CrewSecret>,
        cancel: &CancellationToken,
    ) -> Result<Crew, Error> {
        if let Some(secret) = &secret {
            secret.check()?;
        }
        let keys = CrewKeys::new(prefix);
        let session = Keys::new_run_id();
        let mut conn = target.connection().await?;
        renew_session(&mut conn, &keys, &session)
            .await
            .map_err(|e| target.refused(&e))?;
        let renewal = tokio::spawn(keep_session(conn.clone(), keys.clone(), session.clone()));
        let crew = Crew {
            keys,
            session,
            conn,
            connector: target.connector(),
            timeout: target.timeout(),
            cluster: target.is_cluster(),
            wanted: count as usize,
            wait,
            members: Mutex::new(Vec::new()),
            announce: AtomicBool::new(true),
            planned: Mutex::new(None),
            renewal,
            secret,
        };
        crate::note!(
            "racelab: waiting for {count} worker{} to join; start each with: {}",
            if count == 1 { "" } else { "s" },
            worker_command(target, prefix)
        );
        let deadline = Instant::now() + wait;
        while crew.size() < crew.wanted {
            if cancel.is_cancelled() {
                crew.dismiss().await;
                return Err(Error::Interrupted);
            }
            if Instant::now() >= deadline {
                crew.dismiss().await;
                return Err(Error::Usage(format!(
                    "{} of {count} workers joined within {}; start more with `{}`, or ask for fewer with --workers",
                    crew.size(),
                    humantime::format_duration(wait),
                    worker_command(target, prefix)
                )));
            }
            match crew.claim_one().await {
                Ok(Some(member)) => crate::note!(
                    "racelab: worker {}/{count} joined: {} on {} (pid {})",
                    crew.size(),
                    member.id,
                    member.host,
                    member.pid
                ),
                Ok(None) => tokio::time::sleep(POLL).await,
                Err(e) if crate::redis_errors::is_transient(&e) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    crew.dismiss().await;
                    return Err(target.refused(&e));
                }
            }
        }
        Ok(crew)
    }

    fn members(&self) -> Vec<Member> {
        self.members
            .lock()
            .map(|m| m.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn live(&self) -> Vec<Member> {
        self.members().into_iter().filter(|m| !m.gone).collect()
    }

    /// Takes the next worker from the lobby, if one waits and can be claimed, and adds it.
    async fn claim_one(&self) -> redis::RedisResult<Option<Member>> {
        let mut conn = self.conn.clone();
        loop {
            let id: Option<String> = conn.lpop(self.keys.lobby(), None).await?;
            let Some(id) = id else {
                return Ok(None);
            };
            if self.members().iter().any(|m| m.id == id) {
                continue;
            }
            let card: Option<(String, u32)> = match CLAIM
                .key(self.keys.worker(&id))
                .arg(&self.session)
                .invoke_async(&mut conn)
                .await
            {
                Ok(card) => card,
                // The answer was lost, not necessarily the claim: a worker claimed by us is
                // adopted, one that was not goes back to the head of the line.
                Err(e) => match self.recover_claim(&mut conn, &id).await {
                    Ok(Some(card)) => Some(card),
                    _ => return Err(e),
                },
            };
            // A worker that is gone, or that another session claimed first, is passed over.
            let Some((host, pid)) = card else {
                continue;
            };
            let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
            let member = Member {
                name: format!("w{}", members.len() + 1),
                id,
                host,
                pid,
                gone: false,
            };
            members.push(member.clone());
            return Ok(Some(member));
        }
    }

    /// After a claim whose answer was lost: the card's host and pid if the claim went through,
    /// else the id is put back in the lobby.
    async fn recover_claim(
        &self,
        conn: &mut Conn,
        id: &str,
    ) -> redis::RedisResult<Option<(String, u32)>> {
        let (session, host, pid): (Option<String>, Option<String>, Option<u32>) =
            redis::cmd("HMGET")
                .arg(self.keys.worker(id))
                .arg("session")
                .arg("host")
                .arg("pid")
                .query_async(conn)
                .await?;
        match (session, host, pid) {
            (Some(session), Some(host), Some(pid)) if session == self.session => {
                Ok(Some((host, pid)))
            }
            (None, Some(_), _) => {
                let _: () = redis::cmd("LPUSH")
                    .arg(self.keys.lobby())
                    .arg(id)
                    .query_async(conn)
                    .await?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Replaces vanished workers with ones waiting in the lobby, without waiting for any: a
    /// long session (the TUI) gets its crew back when workers are started again.
    async fn top_up(&self) {
        while self.size() < self.wanted {
            match self.claim_one().await {
                Ok(Some(member)) if self.announce.load(Ordering::SeqCst) => crate::note!(
                    "racelab: worker {} joined in place of a vanished one: {} on {} (pid {})",
                    member.name,
                    member.id,
                    member.host,
                    member.pid
                ),
                Ok(Some(_)) => {}
                _ => return,
            }
        }
    }

    /// Stops saying on stderr who joins: the screen belongs to the TUI.
    pub fn quiet(&self) {
        self.announce.store(false, Ordering::SeqCst);
    }

    /// How many live workers the crew has.
    pub fn size(&self) -> usize {
        self.live().len()
    }

    /// Ends the session: the workers leave it (and wait for another, unless they serve once).
    /// Waits a moment for them to read that, then deletes the session's keys.
    pub async fn dismiss(&self) {
        self.renewal.abort();
        let mut conn = self.conn.clone();
        let control = self.keys.control(&self.session);
        if send(&mut conn, &control, "end", "", self.secret.as_ref())
            .await
            .is_ok()
        {
            let deadline = Instant::now() + DISMISS_WAIT;
            while Instant::now() < deadline && self.still_claimed(&mut conn).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // A worker that did not read the end notices the session key is gone.
        let _: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(self.keys.session(&self.session))
            .arg(&control)
            .query_async(&mut conn)
            .await;
    }

    /// Whether a worker still holds a card claimed by this session.
    async fn still_claimed(&self, conn: &mut Conn) -> bool {
        let mut pipe = redis::pipe();
        for member in self.members() {
            pipe.cmd("HGET")
                .arg(self.keys.worker(&member.id))
                .arg("session");
        }
        match pipe.query_async::<Vec<Option<String>>>(conn).await {
            Ok(sessions) => sessions
                .iter()
                .any(|s| s.as_deref() == Some(self.session.as_str())),
            Err(_) => false,
        }
    }

    /// How the crew's live workers (topped up from the lobby first, as a run does) would share
    /// `updaters`: contiguous runs of updaters, in the order the workers joined.
    pub async fn plan(&self, updaters: u32) -> Vec<WorkerShare> {
        self.top_up().await;
        let assigned = self.assign(updaters);
        let shares = assigned.iter().map(|(a, m)| share_of(a, m, None)).collect();
        if let Ok(mut planned) = self.planned.lock() {
            *planned = Some((updaters, assigned));
        }
        shares
    }

    /// The plan made for a run of `n` updaters, if there is one and all its workers are still
    /// in the crew; else a fresh share, topped up from the lobby first.
    async fn share_for(&self, n: u32) -> Shares {
        let planned = self.planned.lock().ok().and_then(|mut p| p.take());
        if let Some((planned_n, assigned)) = planned {
            let live = self.live();
            if planned_n == n
                && assigned
                    .iter()
                    .all(|(_, m)| live.iter().any(|l| l.id == m.id))
            {
                return assigned;
            }
        }
        self.top_up().await;
        self.assign(n)
    }

    fn assign(&self, n: u32) -> Shares {
        let live = self.live();
        let k = live.len().max(1) as u64;
        live.into_iter()
            .enumerate()
            .map(|(w, m)| {
                let updaters = share_range(n, k, w as u64);
                let assignment = Assignment {
                    worker_id: m.id.clone(),
                    name: m.name.clone(),
                    start: updaters.start,
                    end: updaters.end,
                    token: String::new(),
                };
                (assignment, m)
            })
            .collect()
    }

    /// Writes the run's admission hash: every worker of `shares` with its token, under the
    /// safety-net expiry of the run's keys.
    async fn admit(&self, keys: &Keys, shares: &[Assignment]) -> Result<(), Error> {
        let admitted: Vec<(&str, &str)> = shares
            .iter()
            .map(|a| (a.worker_id.as_str(), a.token.as_str()))
            .collect();
        let ttl = crate::keys::SAFETY_TTL.as_millis() as i64;
        let mut conn = self.conn.clone();
        redis::pipe()
            .hset_multiple(keys.admission(), &admitted)
            .ignore()
            .pexpire(keys.admission(), ttl)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| Error::Run {
                target: self.session.clone(),
                reason: format!("admitting the workers to the run failed: {}", describe(&e)),
            })
    }

    /// Runs `workload` in the crew's workers: hands each its share, opens the barrier when all
    /// are ready, and forwards their events to `tx` until every worker ended or vanished. Returns
    /// why the run stopped early, if it did, and who ran what.
    #[allow(clippy::too_many_arguments)]
    async fn race(
        &self,
        strategy: Strategy,
        workload: &Workload,
        keys: &Arc<Keys>,
        run_id: &str,
        tx: mpsc::Sender<Event>,
        stop: CancellationToken,
        phases: bool,
    ) -> Result<(Option<String>, Vec<WorkerShare>), Error> {
        let n = workload.updaters;
        let assigned = self.share_for(n).await;
        if assigned.is_empty() {
            return Err(Error::Usage(
                "every worker of this run has vanished and none waits to replace them; start workers (racelab worker) and run again".to_owned(),
            ));
        }
        // Each worker's writes carry a token of this run's, which the admission hash holds
        // until the worker is taken for gone: then its late writes are refused.
        let shares: Vec<Assignment> = assigned
            .iter()
            .map(|(a, _)| Assignment {
                token: format!("{:016x}", rand::random::<u64>()),
                ..a.clone()
            })
            .collect();
        self.admit(keys, &shares).await?;
        let job = Job {
            run_id: run_id.to_owned(),
            strategy,
            workload: workload.clone(),
            phases,
            cluster: self.cluster,
            shares: shares.clone(),
        };
        let mut race = Race::new(workload, keys, &shares, tx, stop);
        let body = serde_json::to_string(&job).map_err(|e| Error::Run {
            target: self.session.clone(),
            reason: format!("the job could not be written: {e}"),
        })?;
        let mut conn = self.conn.clone();
        let control = self.keys.control(&self.session);
        send_naming(
            &mut conn,
            &control,
            "job",
            &body,
            Some(&keys.events()),
            self.secret.as_ref(),
        )
        .await
        .map_err(|e| Error::Run {
            target: self.session.clone(),
            reason: format!("handing the workers their job failed: {}", describe(&e)),
        })?;
        race.run(self, run_id).await;
        if let Ok(mut members) = self.members.lock() {
            for member in members.iter_mut() {
                if race.vanished.contains_key(&member.id) {
                    member.gone = true;
                }
            }
        }
        let shares = assigned
            .iter()
            .map(|(a, m)| {
                let gone = race.vanished.get(&m.id);
                let mut share = share_of(a, m, gone.map(|(why, _)| why.clone()));
                share.left = gone.is_some_and(|(_, left)| *left);
                share
            })
            .collect();
        Ok((race.stopped, shares))
    }
}

impl RemoteUpdaters for Crew {
    fn race<'a>(
        &'a self,
        strategy: Strategy,
        workload: &'a Workload,
        keys: &'a Arc<Keys>,
        run_id: &'a str,
        tx: mpsc::Sender<Event>,
        stop: CancellationToken,
        phases: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<RaceOutcome, Error>> + Send + 'a>>
    {
        Box::pin(Crew::race(
            self, strategy, workload, keys, run_id, tx, stop, phases,
        ))
    }

    fn plan(
        &self,
        updaters: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<WorkerShare>> + Send + '_>> {
        Box::pin(Crew::plan(self, updaters))
    }
}

/// Worker `w`'s updaters when `n` are shared by `k` workers: contiguous, sizes differing by
/// one at most.
fn share_range(n: u32, k: u64, w: u64) -> std::ops::Range<u32> {
    let split = |w: u64| (u64::from(n) * w / k) as u32;
    split(w)..split(w + 1)
}

fn share_of(a: &Assignment, m: &Member, vanished: Option<String>) -> WorkerShare {
    WorkerShare {
        worker: a.name.clone(),
        id: m.id.clone(),
        host: m.host.clone(),
        pid: m.pid,
        first_updater: (a.start < a.end).then_some(a.start + 1),
        last_updater: (a.start < a.end).then_some(a.end),
        vanished,
        left: false,
    }
}

/// How long dismissing a crew waits for its workers to read that the session is over.
const DISMISS_WAIT: Duration = Duration::from_secs(1);

async fn renew_session(conn: &mut Conn, keys: &CrewKeys, session: &str) -> redis::RedisResult<()> {
    redis::pipe()
        .cmd("SET")
        .arg(keys.session(session))
        .arg(std::process::id())
        .arg("PX")
        .arg(TTL.as_millis() as u64)
        .ignore()
        .cmd("PEXPIRE")
        .arg(keys.control(session))
        .arg(CONTROL_TTL.as_millis() as u64)
        .ignore()
        .query_async(conn)
        .await
}

/// Keeps the session (and its control stream) alive until the crew is dismissed or dropped.
async fn keep_session(mut conn: Conn, keys: CrewKeys, session: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let _ = renew_session(&mut conn, &keys, &session).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Outcome, Seen, WriteScope};

    #[test]
    fn shares_cover_every_updater_once() {
        for (n, k) in [(20, 3), (2, 3), (1_000_000, 7), (0, 2)] {
            let mut next = 0;
            for w in 0..k {
                let range = share_range(n, k, w);
                assert_eq!(range.start, next);
                assert!(range.len() as u64 <= u64::from(n) / k + 1);
                next = range.end;
            }
            assert_eq!(next, n);
        }
    }

    #[test]
    fn events_cross_redis_unchanged() {
        let events = vec![
            Event {
                at: Duration::from_micros(1500),
                updater: 7,
                kind: EventKind::Read {
                    round: 1,
                    seen: Some(Seen {
                        status: "Scheduled",
                        count: 3,
                        write: 12,
                    }),
                    version: Some(9),
                    segments: vec![crate::event::SawWrite {
                        segment: 4,
                        write: 8,
                    }],
                },
            },
            Event {
                at: Duration::from_millis(12),
                updater: 7,
                kind: EventKind::Acknowledged {
                    round: 1,
                    segment: 7,
                    status: "Boarding",
                    read_at: Some(Duration::from_micros(1500)),
                    seen: None,
                    written_count: Some(4),
                    latency: Duration::from_millis(11),
                    scope: WriteScope::Journey,
                },
            },
            Event {
                at: Duration::from_millis(13),
                updater: 8,
                kind: EventKind::Failed {
                    round: 0,
                    segment: 8,
                    status: "Delayed",
                    outcome: Outcome::Unknown,
                    reason: "timed out".into(),
                    gave_up: false,
                },
            },
        ];
        let wire = serde_json::to_string(&events).unwrap();
        let back: Vec<Event> = serde_json::from_str(&wire).unwrap();
        assert_eq!(format!("{back:?}"), format!("{events:?}"));
        // A status is interned on arrival: the engine compares them as `'static` names.
        let EventKind::Acknowledged { status, .. } = back[1].kind else {
            panic!("{back:?}");
        };
        assert!(std::ptr::eq(
            status,
            crate::journey::intern_status("Boarding")
        ));
    }
}
