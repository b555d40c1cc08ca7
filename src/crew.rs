//! A crew of workers: a run's updaters racing from several processes or hosts, as the journey
//! service's instances do in production (`racelab worker`, `racelab run --workers K`).
//!
//! Everything goes through the run's own Redis, under `<prefix>:crew:{crew}:` ([`CrewKeys`]):
//! - a worker puts its card (host, pid) under its id, renews it every second, and queues its id
//!   in the lobby ([`crate::worker`]);
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::streams::StreamReadReply;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::{RaceOutcome, RemoteUpdaters};
use crate::error::Error;
use crate::event::{Event, EventKind, Outcome};
use crate::journey::update_status;
use crate::keys::{CrewKeys, Keys};
use crate::lease::{RENEW_EVERY, TTL};
use crate::redis_errors::describe;
use crate::roster::WorkerShare;
use crate::strategy::Strategy;
use crate::target::{Conn, Connector, Target};
use crate::workload::Workload;

/// How often a waiting side polls (a coordinator its lobby, a worker its card).
pub(crate) const POLL: Duration = Duration::from_millis(100);

static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../assets/claim_worker.lua")));

/// What the coordinator tells its workers on the control stream.
#[derive(Debug)]
pub(crate) enum Control {
    Job(Box<Job>),
    /// The barrier opens: release the updaters.
    Go {
        run_id: String,
    },
    /// Stop the run: what is in flight is reported unknown.
    Abort {
        run_id: String,
    },
    /// The session is over.
    End,
    /// A job this racelab cannot read (another version's): why, and the run's events stream to
    /// say so on.
    Unreadable {
        reason: String,
        events: String,
    },
}

/// One run, as the workers are told it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Job {
    pub run_id: String,
    pub strategy: Strategy,
    pub workload: Workload,
    /// Whether phase events (reading, writing…) are wanted: a screen or a history watches.
    pub phases: bool,
    pub cluster: bool,
    pub shares: Vec<Assignment>,
}

/// A worker's share of a run: updaters `start..end` (global, 0-based).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Assignment {
    pub worker_id: String,
    pub name: String,
    pub start: u32,
    pub end: u32,
}

impl Job {
    pub(crate) fn share_of(&self, worker_id: &str) -> Option<&Assignment> {
        self.shares.iter().find(|a| a.worker_id == worker_id)
    }
}

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
        cancel: &CancellationToken,
    ) -> Result<Crew, Error> {
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
        if send(&mut conn, &control, "end", "").await.is_ok() {
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
                };
                (assignment, m)
            })
            .collect()
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
        let shares: Vec<Assignment> = assigned.iter().map(|(a, _)| a.clone()).collect();
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
        send_naming(&mut conn, &control, "job", &body, Some(&keys.events()))
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

/// Worker `w`'s updaters when `n` are shared by `k` workers: contiguous, sizes differing by
/// one at most.
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

/// Where each worker of a run is, as the coordinator follows it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Preparing,
    Ready,
    Ended,
}

/// The coordinator's side of one distributed run.
struct Race<'a> {
    workload: &'a Workload,
    events_key: String,
    shares: &'a [Assignment],
    phase: HashMap<String, Phase>,
    /// Workers gone before their share was done: why, and whether they said so (left).
    vanished: HashMap<String, (String, bool)>,
    /// Per updater: updates reported (acknowledged or failed), and whether it is done.
    reported: Vec<u32>,
    done: Vec<bool>,
    tx: mpsc::Sender<Event>,
    stop: CancellationToken,
    stopped: Option<String>,
    released: Option<Instant>,
    /// Where the events stream was read up to.
    last_id: String,
    /// The last event batch taken from each worker: a batch sent twice (a retry after a timeout
    /// that had in fact gone through) is counted once.
    batches: HashMap<String, u64>,
    /// Workers a batch of whose events never arrived (a gap in the numbers).
    gaps: std::collections::HashSet<String>,
    /// When the job went out: times before the release are told from here.
    sent: Instant,
}

impl<'a> Race<'a> {
    fn new(
        workload: &'a Workload,
        keys: &Keys,
        shares: &'a [Assignment],
        tx: mpsc::Sender<Event>,
        stop: CancellationToken,
    ) -> Race<'a> {
        Race {
            workload,
            events_key: keys.events(),
            shares,
            phase: shares
                .iter()
                .map(|a| (a.worker_id.clone(), Phase::Preparing))
                .collect(),
            vanished: HashMap::new(),
            reported: vec![0; workload.updaters as usize],
            done: vec![false; workload.updaters as usize],
            tx,
            stop,
            stopped: None,
            released: None,
            last_id: "0-0".to_owned(),
            batches: HashMap::new(),
            gaps: Default::default(),
            sent: Instant::now(),
        }
    }

    /// The workers still in the run.
    fn open_workers(&self) -> Vec<String> {
        self.phase
            .iter()
            .filter(|(_, p)| **p != Phase::Ended)
            .map(|(w, _)| w.clone())
            .collect()
    }

    fn open(&self, worker: &str) -> bool {
        self.phase.get(worker).is_some_and(|p| *p != Phase::Ended)
    }

    fn name(&self, worker: &str) -> String {
        self.shares
            .iter()
            .find(|a| a.worker_id == worker)
            .map_or_else(|| worker.to_owned(), |a| a.name.clone())
    }

    async fn run(&mut self, crew: &Crew, run_id: &str) {
        let sent = self.sent;
        let control = crew.keys.control(&crew.session);
        let mut conn = crew.conn.clone();
        let block = (crew.timeout / 2).clamp(Duration::from_millis(1), Duration::from_millis(500));
        let mut reader = None;
        let mut aborted: Option<Instant> = None;
        // A worker that does not answer a stop within this long is given up on.
        let grace = crew.timeout * 2 + Duration::from_secs(2);
        // Redis not answering for this long ends the wait: no worker could say anything.
        let silence = (crew.timeout * 3).max(Duration::from_secs(2));
        let mut answered = Instant::now();
        let mut looked = Instant::now();
        while self.phase.values().any(|p| *p != Phase::Ended) {
            if self.stop.is_cancelled() && aborted.is_none() {
                let _ = send(&mut conn, &control, "abort", run_id).await;
                aborted = Some(Instant::now());
            }
            if aborted.is_some_and(|at| at.elapsed() >= grace) {
                if let Some(reader) = reader.as_mut() {
                    self.drain(reader).await;
                }
                let why = format!(
                    "did not answer the stop within {}",
                    humantime::format_duration(grace)
                );
                self.give_up_on_the_rest(&why).await;
                break;
            }
            if self.released.is_none() && !self.stop.is_cancelled() && sent.elapsed() >= crew.wait {
                let unready: Vec<String> = self
                    .phase
                    .iter()
                    .filter(|(_, p)| **p == Phase::Preparing)
                    .map(|(w, _)| self.name(w))
                    .collect();
                self.stopped.get_or_insert_with(|| {
                    format!(
                        "{} did not get ready within --join-timeout ({})",
                        unready.join(", "),
                        humantime::format_duration(crew.wait)
                    )
                });
                self.stop.cancel();
            }
            if answered.elapsed() >= silence {
                let why = format!(
                    "Redis stopped answering for {}, so nothing the worker did could be heard",
                    humantime::format_duration(silence)
                );
                self.give_up_on_the_rest(&why).await;
                break;
            }
            if reader.is_none() {
                reader = crew.connector.connect(Some(&self.events_key)).await.ok();
            }
            let read = match reader.as_mut() {
                Some(reader) => self.read(reader, Some(block)).await.ok(),
                None => {
                    tokio::time::sleep(POLL).await;
                    None
                }
            };
            match read {
                Some(_) => answered = Instant::now(),
                // No connection, or a broken one: open another on the next turn.
                None => reader = None,
            }
            if self.released.is_none()
                && !self.stop.is_cancelled()
                && self.phase.values().all(|p| *p == Phase::Ready)
            {
                match send(&mut conn, &control, "go", run_id).await {
                    Ok(()) => self.released = Some(Instant::now()),
                    Err(e) => {
                        self.stopped.get_or_insert_with(|| {
                            format!("releasing the workers failed: {}", describe(&e))
                        });
                        self.stop.cancel();
                    }
                }
            }
            if looked.elapsed() >= RENEW_EVERY / 2 {
                looked = Instant::now();
                self.look_for_vanished(crew, reader.as_mut()).await;
            }
        }
    }

    /// Reads the events stream to its end without waiting; false when Redis did not let it.
    async fn drain(&mut self, reader: &mut redis::aio::MultiplexedConnection) -> bool {
        loop {
            match self.read(reader, None).await {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Ends the run for every worker still in it.
    async fn give_up_on_the_rest(&mut self, why: &str) {
        let open = self.open_workers();
        for worker in open {
            self.vanish(&worker, why.to_owned(), "vanished").await;
        }
    }

    /// Reads what the workers sent; `block` waits for it.
    async fn read(
        &mut self,
        reader: &mut redis::aio::MultiplexedConnection,
        block: Option<Duration>,
    ) -> redis::RedisResult<usize> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(256);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&self.events_key).arg(&self.last_id);
        let reply: Option<StreamReadReply> = cmd.query_async(reader).await?;
        let mut read = 0;
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                read += 1;
                self.last_id = entry.id.clone();
                let worker: Option<String> = entry.get("w");
                let kind: Option<String> = entry.get("t");
                let body: Option<String> = entry.get("b");
                let batch: Option<u64> = entry.get("n");
                let (Some(worker), Some(kind)) = (worker, kind) else {
                    continue;
                };
                if !self.open(&worker) {
                    continue;
                }
                if let Some(batch) = batch {
                    let last = self.batches.entry(worker.clone()).or_insert(0);
                    if batch <= *last {
                        continue;
                    }
                    if batch > *last + 1 {
                        self.gaps.insert(worker.clone());
                    }
                    *last = batch;
                }
                self.receive(&worker, &kind, body.as_deref().unwrap_or(""))
                    .await;
            }
        }
        Ok(read)
    }

    async fn receive(&mut self, worker: &str, kind: &str, body: &str) {
        match kind {
            "ready" => {
                self.phase.insert(worker.to_owned(), Phase::Ready);
            }
            "events" => {
                let Ok(events) = serde_json::from_str::<Vec<Event>>(body) else {
                    let reason = format!(
                        "{} sent events this racelab cannot read (is it another version?)",
                        self.name(worker)
                    );
                    self.stopped.get_or_insert(reason);
                    self.stop.cancel();
                    return;
                };
                for event in events {
                    self.forward(event).await;
                }
            }
            "end" => {
                if !body.is_empty() {
                    let reason = format!("{}: {body}", self.name(worker));
                    self.stopped.get_or_insert(reason);
                    self.stop.cancel();
                }
                // An end must account for every update of the share; what it does not (events
                // lost on the way) is unknown, and the run is not complete.
                let missing = self
                    .settle(worker, "its outcome never arrived (events lost on the way)")
                    .await;
                if missing > 0 && self.released.is_some() {
                    let reason = format!(
                        "{} ended with {missing} update{} unaccounted for, reported unknown",
                        self.name(worker),
                        if missing == 1 { "" } else { "s" }
                    );
                    self.stopped.get_or_insert(reason);
                }
            }
            // It reported its own in-flight updates unknown before it went.
            "left" => {
                let why = if self.released.is_some() {
                    format!("{body}; its in-flight updates are reported unknown")
                } else {
                    body.to_owned()
                };
                self.vanish(worker, why, "left").await;
            }
            _ => {}
        }
    }

    async fn forward(&mut self, event: Event) {
        let u = event.updater as usize;
        if u >= self.done.len() {
            return;
        }
        match event.kind {
            EventKind::Acknowledged { .. } | EventKind::Failed { .. } => self.reported[u] += 1,
            EventKind::Done => self.done[u] = true,
            _ => {}
        }
        let _ = self.tx.send(event).await;
    }

    /// Workers whose card expired have vanished: what they sent is read to the end, then what
    /// their updaters had in flight is reported unknown.
    async fn look_for_vanished(
        &mut self,
        crew: &Crew,
        reader: Option<&mut redis::aio::MultiplexedConnection>,
    ) {
        let open = self.open_workers();
        if open.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for worker in &open {
            pipe.exists(crew.keys.worker(worker));
        }
        let mut conn = crew.conn.clone();
        // Redis not answering is not a worker vanishing.
        let Ok(alive) = pipe.query_async::<Vec<bool>>(&mut conn).await else {
            return;
        };
        let missing: Vec<String> = open
            .into_iter()
            .zip(alive)
            .filter(|(_, alive)| !alive)
            .map(|(w, _)| w)
            .collect();
        if missing.is_empty() {
            return;
        }
        // What the worker sent before it went is all in the stream by now: read it to the end
        // first, or try again at the next look.
        let Some(reader) = reader else {
            return;
        };
        if !self.drain(reader).await {
            return;
        }
        for worker in missing {
            if self.open(&worker) {
                let why = "its card expired: the process is gone or cut off from Redis";
                self.vanish(&worker, why.to_owned(), "vanished").await;
            }
        }
    }

    /// Ends `worker`'s part in the run: each of its updaters that did not finish has its next
    /// update reported unknown (`why`) and is done. Returns how many updates that made unknown.
    async fn settle(&mut self, worker: &str, why: &str) -> u64 {
        self.phase.insert(worker.to_owned(), Phase::Ended);
        let Some(share) = self.shares.iter().find(|a| a.worker_id == worker).cloned() else {
            return 0;
        };
        if self.released.is_none() {
            return 0;
        }
        // Events lost on the way (a gap in the batch numbers) may have held any of the share's
        // outcomes: then an updater's Done proves nothing about the rounds it did not report.
        let lost_events = self.gaps.contains(worker);
        let at = self.released.map_or(Duration::ZERO, |r| r.elapsed());
        let mut unknown = 0;
        for u in share.start..share.end {
            let i = u as usize;
            let done = self.done.get(i).copied().unwrap_or(true);
            if done && !lost_events {
                continue;
            }
            // Every update it did not report may have been made, or not.
            for round in self.reported[i]..self.workload.rounds {
                unknown += 1;
                self.forward(Event {
                    at,
                    updater: u,
                    kind: EventKind::Failed {
                        round,
                        segment: self.workload.segment_of(u),
                        status: update_status(u as usize, round),
                        outcome: Outcome::Unknown,
                        reason: why.into(),
                        gave_up: false,
                    },
                })
                .await;
            }
            if !done {
                self.forward(Event {
                    at,
                    updater: u,
                    kind: EventKind::Done,
                })
                .await;
            }
        }
        unknown
    }

    /// Ends `worker`'s part in the run before its share was done (`how`: it `vanished` or
    /// `left`).
    async fn vanish(&mut self, worker: &str, why: String, how: &str) {
        let Some(share) = self.shares.iter().find(|a| a.worker_id == worker).cloned() else {
            return;
        };
        // Since the release, or since the job went out when it never came.
        let at = self.released.unwrap_or(self.sent).elapsed();
        let in_flight = self
            .settle(worker, &format!("worker {} {how}", share.name))
            .await;
        let note = if in_flight > 0 {
            format!(
                "{why}; {in_flight} update{} it had not reported {} unknown",
                if in_flight == 1 { "" } else { "s" },
                if in_flight == 1 { "is" } else { "are" }
            )
        } else if self.released.is_none() {
            format!("{why}, before the release")
        } else {
            why
        };
        self.stopped.get_or_insert_with(|| {
            format!(
                "worker {} {how} (noticed at {:.1}s: {note})",
                share.name,
                at.as_secs_f64()
            )
        });
        self.vanished
            .insert(worker.to_owned(), (note, how == "left"));
        // Before the release the run cannot be made as asked: the others are stopped too.
        // After it, the others finish their share, which the final state still proves.
        if self.released.is_none() {
            self.stop.cancel();
        }
    }
}

/// Appends a message of kind `kind` to the control stream.
async fn send(conn: &mut Conn, control: &str, kind: &str, body: &str) -> redis::RedisResult<()> {
    send_naming(conn, control, kind, body, None).await
}

/// [`send`], naming the run's events stream too (a job does, so that even a worker that cannot
/// read the job can answer on it).
async fn send_naming(
    conn: &mut Conn,
    control: &str,
    kind: &str,
    body: &str,
    events: Option<&str>,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    // Only the last messages matter (a worker reads them as they come); a long TUI session must
    // not pile up every job it ever sent.
    let add = pipe
        .cmd("XADD")
        .arg(control)
        .arg("MAXLEN")
        .arg(CONTROL_KEPT)
        .arg("*")
        .arg("t")
        .arg(kind)
        .arg("b")
        .arg(body);
    if let Some(events) = events {
        add.arg("e").arg(events);
    }
    add.ignore();
    pipe.cmd("PEXPIRE")
        .arg(control)
        .arg(CONTROL_TTL.as_millis() as u64)
        .ignore();
    pipe.query_async(conn).await
}

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

/// Control messages kept: about twenty runs' worth.
const CONTROL_KEPT: usize = 64;

/// How long the control stream outlives its last renewal: long enough for a worker to read
/// the session's end.
const CONTROL_TTL: Duration = Duration::from_secs(60);

/// Parses a control-stream entry (`events`: the run's events stream a job names beside its
/// body); `None` for a kind this racelab does not know.
pub(crate) fn parse_control(kind: &str, body: &str, events: String) -> Option<Control> {
    match kind {
        "job" => Some(match serde_json::from_str(body) {
            Ok(job) => Control::Job(Box::new(job)),
            Err(e) => Control::Unreadable {
                reason: e.to_string(),
                events,
            },
        }),
        "go" => Some(Control::Go {
            run_id: body.to_owned(),
        }),
        "abort" => Some(Control::Abort {
            run_id: body.to_owned(),
        }),
        "end" => Some(Control::End),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Seen, WriteScope};

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
                    }),
                    version: Some(9),
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
