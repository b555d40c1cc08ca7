//! `racelab worker`: joins runs from another process or host, and runs the share of their
//! updaters it is handed, as one instance of the journey service among several. The protocol is
//! described in [`crate::crew`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::streams::StreamReadReply;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::WorkerArgs;
use crate::crew::{Control, CrewSecret, Job, POLL, parse_control};
use crate::engine::Share;
use crate::error::Error;
use crate::event::Event;
use crate::keys::{CrewKeys, Keys};
use crate::lease::{Lease, RENEW_EVERY};
use crate::redis_errors::describe;
use crate::target::{Conn, Connector, Target};

use super::card::{LOBBY_TTL, keep_card, renew_card};

/// Serves sessions until interrupted (or, with `--once`, until the first one ends).
pub async fn run(args: &WorkerArgs, cancel: &CancellationToken) -> Result<(), Error> {
    if let Some(secret) = &args.crew_secret {
        secret.check()?;
    }
    let target = args.target().await?;
    let keys = CrewKeys::new(&args.key_prefix);
    // Two connections: the updaters' commands on one, and the card, the lobby and the session
    // checks on the other, so a renewal never queues behind a hundred thousand updates.
    let conn = target.connection().await?;
    let work = target.connection().await?;
    loop {
        let worker =
            Worker::join(&target, &args.key_prefix, &keys, conn.clone(), work.clone()).await?;
        let served = worker
            .serve(&target, args.crew_secret.clone(), cancel)
            .await;
        worker.leave().await;
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        if served? && args.once {
            return Ok(());
        }
    }
}

struct Worker {
    id: String,
    /// Its own --key-prefix: a worker writes only keys under it, whatever a job says.
    prefix: String,
    keys: CrewKeys,
    /// For the card, the lobby, the session checks and what the worker says.
    conn: Conn,
    /// For the updaters and their events.
    work: Conn,
    renewal: tokio::task::JoinHandle<()>,
    lease: Arc<Lease>,
    /// What the last checks of the session found.
    checks: std::sync::Mutex<Checks>,
    silence: Duration,
    /// Set once Redis went unanswered for longer than `silence`: the session is lost.
    cut_off: AtomicBool,
}

#[derive(Default)]
struct Checks {
    /// Since when Redis has not answered.
    unanswered: Option<Instant>,
    /// The session key was missing at the last check.
    missing: bool,
}

impl Worker {
    /// Puts the worker's card in Redis and its id in the lobby.
    async fn join(
        target: &Target,
        prefix: &str,
        keys: &CrewKeys,
        mut conn: Conn,
        work: Conn,
    ) -> Result<Worker, Error> {
        let id = Keys::new_run_id();
        // The lobby is the one crew key with a fixed name, so a key of the user's may sit there.
        // racelab never changes a key it did not create: not even its expiry.
        let kind: String = redis::cmd("TYPE")
            .arg(keys.lobby())
            .query_async(&mut conn)
            .await
            .map_err(|e| target.refused(&e))?;
        if kind != "none" && kind != "list" {
            return Err(Error::Answer {
                target: target.display().to_owned(),
                reason: format!(
                    "that {} holds a {kind}, where racelab keeps its list of waiting workers; it is not racelab's, and racelab never changes a key it did not create: remove it, or choose another --key-prefix for the workers and the run",
                    keys.lobby()
                ),
            });
        }
        let lease = Arc::new(Lease::default());
        let sent = Instant::now();
        renew_card(&mut conn, keys, &id)
            .await
            .map_err(|e| target.refused(&e))?;
        lease.renewed(sent);
        // One transaction: the lobby never exists without its expiry, even for a moment (a
        // worker killed in between would leave it for good).
        crate::strategy::transaction(&mut conn, |pipe| {
            pipe.cmd("RPUSH").arg(keys.lobby()).arg(&id).ignore();
            pipe.cmd("PEXPIRE")
                .arg(keys.lobby())
                .arg(LOBBY_TTL.as_millis() as u64)
                .ignore();
        })
        .await
        .map_err(|e| target.refused(&e))?;
        let renewal = tokio::spawn(keep_card(
            conn.clone(),
            keys.clone(),
            id.clone(),
            lease.clone(),
        ));
        crate::note!(
            "racelab worker {id}: waiting for a run on {} (start one with `racelab run --workers K` against the same Redis; Ctrl-C leaves)",
            target.display()
        );
        Ok(Worker {
            id,
            prefix: prefix.to_owned(),
            keys: keys.clone(),
            conn,
            work,
            renewal,
            lease,
            checks: std::sync::Mutex::new(Checks::default()),
            silence: (target.timeout() * 3).max(Duration::from_secs(2)),
            cut_off: AtomicBool::new(false),
        })
    }

    /// Takes the card down and the id out of the lobby.
    async fn leave(self) {
        self.renewal.abort();
        let mut conn = self.conn.clone();
        let _ = redis::pipe()
            .cmd("DEL")
            .arg(self.keys.worker(&self.id))
            .ignore()
            .cmd("LREM")
            .arg(self.keys.lobby())
            .arg(0)
            .arg(&self.id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await;
    }

    /// Waits to be claimed, then serves the session's runs until it ends. `Ok(true)` when a
    /// session was served.
    async fn serve(
        &self,
        target: &Target,
        secret: Option<CrewSecret>,
        cancel: &CancellationToken,
    ) -> Result<bool, Error> {
        let Some(session) = self.claimed(target, cancel).await? else {
            return Ok(false);
        };
        self.lease.claimed.store(true, Ordering::SeqCst);
        crate::note!("racelab worker {}: joined session {session}", self.id);
        let (ctl_tx, ctl) = mpsc::channel(16);
        let reader = tokio::spawn(read_control(
            target.connector(),
            self.keys.control(&session),
            target.timeout(),
            ctl_tx,
            secret.map(|secret| (secret, self.id.clone())),
        ));
        let mut inbox = Inbox::new(ctl);
        let coordinator = self.keys.session(&session);
        let outcome = loop {
            let message = tokio::select! {
                message = inbox.recv(None) => message,
                () = cancel.cancelled() => break Ok(true),
                () = tokio::time::sleep(RENEW_EVERY) => {
                    if self.session_lost(&coordinator).await.is_some() {
                        break Ok(true);
                    }
                    continue;
                }
            };
            match message {
                Some(Control::Job(job)) if inbox.aborted.remove(&job.run_id) => {
                    // Stopped before this worker got to it: nothing to run, but the
                    // coordinator waits to hear that.
                    let keys = Keys::new(&self.prefix, &job.run_id, &job.workload.journey.id);
                    let mut conn = self.conn.clone();
                    let _ = say(&mut conn, &keys.events(), &self.id, "end", "").await;
                }
                Some(Control::Job(job)) => {
                    if self
                        .run_job(target, &job, &mut inbox, &coordinator, cancel)
                        .await
                    {
                        break Ok(true);
                    }
                }
                Some(Control::Unreadable { reason, events }) => {
                    crate::note!(
                        "racelab worker {}: cannot read the coordinator's job ({reason}); run the same racelab version on every host",
                        self.id
                    );
                    // The coordinator hears why, instead of waiting for the card to expire. Only
                    // a stream under this worker's own prefix is written.
                    if events.starts_with(&format!("{}:", self.prefix)) {
                        let mut conn = self.conn.clone();
                        let why = format!(
                            "cannot read the job ({reason}): run the same racelab version on every host"
                        );
                        let _ = say(&mut conn, &events, &self.id, "left", &why).await;
                    }
                    break Err(Error::Usage(format!(
                        "the coordinator's job could not be read ({reason}); run the same racelab version on every host"
                    )));
                }
                Some(Control::End) | None => break Ok(true),
                Some(Control::Go { .. } | Control::Abort { .. }) => {}
            }
        };
        reader.abort();
        if self.cut_off.load(Ordering::SeqCst) {
            return Err(Error::Run {
                target: target.display().to_owned(),
                reason: format!("Redis stopped answering during session {session}"),
            });
        }
        if !cancel.is_cancelled() {
            crate::note!("racelab worker {}: session {session} is over", self.id);
        }
        outcome
    }

    /// The session that claimed this worker, once one does; `None` when interrupted first, an
    /// error when Redis stops answering for good.
    async fn claimed(
        &self,
        target: &Target,
        cancel: &CancellationToken,
    ) -> Result<Option<String>, Error> {
        let mut conn = self.conn.clone();
        let mut listed = Instant::now();
        let mut unanswered: Option<Instant> = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = tokio::time::sleep(POLL) => {}
            }
            let session: redis::RedisResult<Option<String>> = redis::cmd("HGET")
                .arg(self.keys.worker(&self.id))
                .arg("session")
                .query_async(&mut conn)
                .await;
            match session {
                Ok(Some(session)) => return Ok(Some(session)),
                Ok(None) => unanswered = None,
                Err(e) => {
                    let since = *unanswered.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.silence {
                        return Err(Error::Run {
                            target: target.display().to_owned(),
                            reason: format!(
                                "Redis stopped answering the waiting worker for {} ({}); start it again once Redis is back",
                                humantime::format_duration(self.silence),
                                describe(&e)
                            ),
                        });
                    }
                    continue;
                }
            }
            // A coordinator may have taken the id from the lobby and died before claiming it:
            // the id goes back in line.
            if listed.elapsed() >= RENEW_EVERY * 2 {
                listed = Instant::now();
                let position: redis::RedisResult<Option<i64>> = redis::cmd("LPOS")
                    .arg(self.keys.lobby())
                    .arg(&self.id)
                    .query_async(&mut conn)
                    .await;
                if let Ok(None) = position {
                    let _: redis::RedisResult<()> = redis::cmd("RPUSH")
                        .arg(self.keys.lobby())
                        .arg(&self.id)
                        .query_async(&mut conn)
                        .await;
                }
            }
        }
    }

    /// Why this worker must leave its session, if it must: its coordinator stopped renewing the
    /// session key (missing at two checks in a row), Redis has not answered for too long, or the
    /// worker's own card expired (the coordinator took it for vanished). Says it on stderr.
    async fn session_lost(&self, session_key: &str) -> Option<String> {
        let lost = self.check_session(session_key).await;
        if let Some(why) = &lost {
            crate::note!("racelab worker {}: leaving the session: {why}", self.id);
        }
        lost
    }

    /// [`Worker::session_lost`] without saying it.
    async fn check_session(&self, session_key: &str) -> Option<String> {
        let mut conn = self.conn.clone();
        let exists: redis::RedisResult<bool> = redis::cmd("EXISTS")
            .arg(session_key)
            .query_async(&mut conn)
            .await;
        if self.lease.lapsed() {
            if exists.is_err() {
                // Out of reach of Redis: the session is lost, and nothing will bring it back.
                self.cut_off.store(true, Ordering::SeqCst);
                return Some(format!(
                    "Redis has not answered for {}",
                    humantime::format_duration(Lease::LOCAL_LIMIT)
                ));
            }
            return Some(format!(
                "its card was not renewed for {} (the process stalled, or was too busy to renew it): the coordinator takes it for vanished",
                humantime::format_duration(Lease::LOCAL_LIMIT)
            ));
        }
        let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        match exists {
            Ok(true) => {
                *checks = Checks::default();
                None
            }
            Ok(false) => {
                checks.unanswered = None;
                if std::mem::replace(&mut checks.missing, true) {
                    Some("its coordinator is gone".to_owned())
                } else {
                    None
                }
            }
            Err(_) => {
                let since = *checks.unanswered.get_or_insert_with(Instant::now);
                if since.elapsed() < self.silence {
                    return None;
                }
                self.cut_off.store(true, Ordering::SeqCst);
                Some(format!(
                    "Redis stopped answering for {}",
                    humantime::format_duration(self.silence)
                ))
            }
        }
    }

    /// Runs this worker's share of `job`. Returns whether the session is over (ended,
    /// coordinator gone, or interrupted).
    async fn run_job(
        &self,
        target: &Target,
        job: &Job,
        inbox: &mut Inbox,
        coordinator: &str,
        cancel: &CancellationToken,
    ) -> bool {
        let Some(share) = job.share_of(&self.id).cloned() else {
            return false;
        };
        let keys = Arc::new(Keys::new(
            &self.prefix,
            &job.run_id,
            &job.workload.journey.id,
        ));
        let events = keys.events();
        let mut conn = self.conn.clone();
        if job.cluster != target.is_cluster() {
            let reason = if job.cluster {
                "the run is on a Redis Cluster: start the worker with --cluster"
            } else {
                "the run is on a single Redis server: start the worker with --redis-url"
            };
            crate::note!("racelab worker {}: {reason}", self.id);
            let _ = say(&mut conn, &events, &self.id, "end", reason).await;
            return false;
        }
        let workload = Arc::new(job.workload.clone());
        // A journey service (`exec:`) runs as one copy per worker, as a deployment runs several
        // instances of a service; it lives as long as this share of the run.
        let service = match job.strategy.exec_command() {
            Some(command) => {
                let prefix = Keys::run_prefix(&self.prefix, &job.run_id);
                let started = target
                    .secret_url()
                    .ok_or_else(|| "exec: needs a single Redis server".to_owned())
                    .and_then(|url| {
                        crate::exec::Service::start(command, url, &prefix, target.timeout())
                    });
                match started {
                    Ok(service) => Some(Arc::new(service)),
                    Err(why) => {
                        let reason = format!("could not start the journey service: {why}");
                        crate::note!("racelab worker {}: {reason}", self.id);
                        let _ = say(&mut conn, &events, &self.id, "end", &reason).await;
                        return false;
                    }
                }
            }
            None => None,
        };
        // Its writes into this run carry the token the coordinator admitted it with.
        self.lease.admit(Some(crate::lease::Admission {
            worker: self.id.clone(),
            token: share.token.clone(),
        }));
        let (tx, rx) = mpsc::channel(EVENT_BATCH * 8);
        let stop = CancellationToken::new();
        let prepared = Share::prepare(
            target,
            job.strategy,
            &workload,
            &keys,
            share.start..share.end,
            &self.work,
            &tx,
            stop.clone(),
            job.phases,
            Some(self.lease.clone()),
            None,
            service.as_ref(),
        )
        .await;
        drop(tx);
        let updaters = match prepared {
            Ok(updaters) => updaters,
            Err(e) => {
                let reason = format!("could not prepare its updaters: {e}");
                crate::note!("racelab worker {}: {reason}", self.id);
                let _ = say(&mut conn, &events, &self.id, "end", &reason).await;
                return false;
            }
        };
        let forwarder = tokio::spawn(forward(
            self.work.clone(),
            events.clone(),
            self.id.clone(),
            rx,
        ));
        if let Err(e) = say(&mut conn, &events, &self.id, "ready", "").await {
            crate::note!(
                "racelab worker {}: cannot reach Redis: {}",
                self.id,
                describe(&e)
            );
        }
        let range = crate::roster::updaters_label(share.start..share.end);
        crate::note!(
            "racelab worker {}: {} runs {range} of {} run {}",
            self.id,
            share.name,
            job.strategy,
            job.run_id
        );

        let mut over = false;
        let mut why: Option<String> = None;
        let released = loop {
            tokio::select! {
                message = inbox.recv(Some(&job.run_id)) => match message {
                    Some(Control::Go { .. }) => break true,
                    Some(Control::Abort { .. }) => break false,
                    Some(Control::End) | None => { over = true; break false }
                    _ => {}
                },
                () = cancel.cancelled() => {
                    why = Some("the worker was interrupted".to_owned());
                    over = true;
                    break false;
                }
                () = tokio::time::sleep(RENEW_EVERY) => {
                    if let Some(lost) = self.session_lost(coordinator).await {
                        why = Some(lost);
                        over = true;
                        break false;
                    }
                    // Said again until the release: a ready lost on the way must not leave the
                    // coordinator waiting (it counts each worker once).
                    let _ = say(&mut conn, &events, &self.id, "ready", "").await;
                }
            }
        };
        let stopped = if released {
            updaters.release();
            let stopper = stop.clone();
            let finish = updaters.finish();
            tokio::pin!(finish);
            loop {
                tokio::select! {
                    reason = &mut finish => break reason,
                    message = inbox.recv(Some(&job.run_id)), if !over => match message {
                        Some(Control::Abort { .. }) => stopper.cancel(),
                        Some(Control::End) | None => { over = true; stopper.cancel() }
                        _ => {}
                    },
                    () = cancel.cancelled(), if why.is_none() => {
                        why = Some("the worker was interrupted".to_owned());
                        over = true;
                        stopper.cancel();
                    }
                    () = tokio::time::sleep(RENEW_EVERY), if !stopper.is_cancelled() => {
                        if let Some(lost) = self.session_lost(coordinator).await {
                            why = Some(lost);
                            over = true;
                            stopper.cancel();
                        }
                    }
                }
            }
        } else {
            drop(updaters);
            None
        };
        // Every event is in the stream before the end is.
        let _ = forwarder.await;
        // A worker that leaves mid-run (interrupted, or its session lost) stops only itself, as a
        // service instance shutting down would; an error no retry mends stops the whole run.
        let (kind, body) = match (why, stopped) {
            (Some(why), _) => ("left", why),
            (None, stopped) => ("end", stopped.unwrap_or_default()),
        };
        let _ = say(&mut conn, &events, &self.id, kind, &body).await;
        over
    }
}

/// The control messages of a session, as the job at hand needs them: a job that arrives while
/// another runs waits its turn (a TUI may start a run while the last one is still stopping), and
/// a stop for a run not yet started is remembered for when its job comes up.
struct Inbox {
    rx: mpsc::Receiver<Control>,
    /// Jobs (readable or not) waiting for the one at hand to end.
    jobs: std::collections::VecDeque<Control>,
    aborted: std::collections::HashSet<String>,
}

impl Inbox {
    fn new(rx: mpsc::Receiver<Control>) -> Inbox {
        Inbox {
            rx,
            jobs: Default::default(),
            aborted: Default::default(),
        }
    }

    /// The next message for the run `current` (`None`: between runs). Cancel-safe: a message
    /// taken is either returned or kept.
    async fn recv(&mut self, current: Option<&str>) -> Option<Control> {
        loop {
            if current.is_none()
                && let Some(job) = self.jobs.pop_front()
            {
                return Some(job);
            }
            match self.rx.recv().await? {
                job @ (Control::Job(_) | Control::Unreadable { .. }) if current.is_some() => {
                    self.jobs.push_back(job);
                }
                Control::Abort { run_id } if current != Some(run_id.as_str()) => {
                    self.aborted.insert(run_id);
                }
                Control::Go { run_id } if current != Some(run_id.as_str()) => {}
                other => return Some(other),
            }
        }
    }
}

/// Events per stream entry at most.
const EVENT_BATCH: usize = 512;

/// Sends the share's events to the coordinator, batched: whatever piled up while the last batch
/// was on its way goes in the next.
/// Each batch is numbered, so one sent again after a timeout that had in fact gone through is
/// counted once.
async fn forward(mut conn: Conn, key: String, worker: String, mut rx: mpsc::Receiver<Event>) {
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    let mut number = 0u64;
    while rx.recv_many(&mut batch, EVENT_BATCH).await > 0 {
        number += 1;
        if let Ok(body) = serde_json::to_string(&batch) {
            for attempt in 1..=3 {
                match say_numbered(&mut conn, &key, &worker, "events", &body, Some(number)).await {
                    Err(e) if attempt < 3 && crate::redis_errors::is_transient(&e) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    _ => break,
                }
            }
        }
        batch.clear();
    }
}

/// Appends a message from `worker` to a run's events stream.
async fn say(
    conn: &mut Conn,
    key: &str,
    worker: &str,
    kind: &str,
    body: &str,
) -> redis::RedisResult<()> {
    say_numbered(conn, key, worker, kind, body, None).await
}

/// How long a run's events stream outlives the last message sent on it: the coordinator reads
/// them as they come and deletes the stream with the run's keys, so a stream left by a worker
/// whose coordinator is gone does not stay.
const EVENTS_TTL: Duration = Duration::from_secs(60);

async fn say_numbered(
    conn: &mut Conn,
    key: &str,
    worker: &str,
    kind: &str,
    body: &str,
    number: Option<u64>,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    let add = pipe.cmd("XADD").arg(key).arg("*").arg("w").arg(worker);
    if let Some(number) = number {
        add.arg("n").arg(number);
    }
    add.arg("t").arg(kind).arg("b").arg(body).ignore();
    pipe.cmd("PEXPIRE")
        .arg(key)
        .arg(EVENTS_TTL.as_millis() as u64)
        .ignore();
    pipe.query_async(conn).await
}

/// Reads the session's control stream from its start, on a connection of its own (it blocks),
/// and hands each message on until nobody listens. With the crew's secret (and this worker's
/// id, to say so), a message not signed with it is dropped.
async fn read_control(
    connector: Connector,
    key: String,
    timeout: Duration,
    tx: mpsc::Sender<Control>,
    secret: Option<(CrewSecret, String)>,
) {
    let mut told = false;
    let block = (timeout / 2).clamp(Duration::from_millis(1), Duration::from_millis(500));
    let mut last = "0-0".to_owned();
    let mut conn = None;
    while !tx.is_closed() {
        if conn.is_none() {
            conn = connector.connect(Some(&key)).await.ok();
            if conn.is_none() {
                tokio::time::sleep(POLL).await;
                continue;
            }
        }
        let Some(reader) = conn.as_mut() else {
            continue;
        };
        let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(16)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(&key)
            .arg(&last)
            .query_async(reader)
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(_) => {
                conn = None;
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in stream.ids {
                last = entry.id.clone();
                let kind: String = entry.get("t").unwrap_or_default();
                let body: String = entry.get("b").unwrap_or_default();
                let events: String = entry.get("e").unwrap_or_default();
                if let Some((secret, id)) = &secret {
                    let signature: String = entry.get("s").unwrap_or_default();
                    if !secret.verifies(&key, &kind, &body, &signature) {
                        if !std::mem::replace(&mut told, true) {
                            crate::note!(
                                "racelab worker {id}: ignored a {kind} not signed with this crew's secret (start the run with the same --crew-secret)"
                            );
                        }
                        continue;
                    }
                }
                if let Some(control) = parse_control(&kind, &body, events)
                    && tx.send(control).await.is_err()
                {
                    return;
                }
            }
        }
    }
}
