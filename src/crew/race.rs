//! The coordinator's side of one distributed run: each worker's place (preparing, ready, racing,
//! done, vanished), the barrier that releases every worker at once, the events that come back,
//! and what a vanished worker leaves unknown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::streams::StreamReadReply;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::{Event, EventKind, Outcome};
use crate::keys::Keys;
use crate::lease::RENEW_EVERY;
use crate::redis_errors::describe;
use crate::target::Conn;
use crate::workload::Workload;

use super::message::Assignment;
use super::message::send;
use super::{Crew, POLL};

/// Where each worker of a run is, as the coordinator follows it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Stage {
    #[default]
    Preparing,
    Ready,
    Ended,
}

/// The coordinator's side of one distributed run.
pub(super) struct Race<'a> {
    workload: &'a Workload,
    events_key: String,
    shares: &'a [Assignment],
    phase: HashMap<String, Stage>,
    /// Workers gone before their share was done: why, and whether they said so (left).
    pub(super) vanished: HashMap<String, (String, bool)>,
    /// Per updater: updates reported (acknowledged or failed), and whether it is done.
    reported: Vec<u32>,
    done: Vec<bool>,
    tx: mpsc::Sender<Event>,
    stop: CancellationToken,
    pub(super) stopped: Option<String>,
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
    /// The run's admission hash, and the connection to strike a gone worker off it with.
    admission: String,
    conn: Option<Conn>,
}

impl<'a> Race<'a> {
    pub(super) fn new(
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
                .map(|a| (a.worker_id.clone(), Stage::Preparing))
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
            admission: keys.admission(),
            conn: None,
        }
    }

    /// The workers still in the run.
    fn open_workers(&self) -> Vec<String> {
        self.phase
            .iter()
            .filter(|(_, p)| **p != Stage::Ended)
            .map(|(w, _)| w.clone())
            .collect()
    }

    fn open(&self, worker: &str) -> bool {
        self.phase.get(worker).is_some_and(|p| *p != Stage::Ended)
    }

    fn name(&self, worker: &str) -> String {
        self.shares
            .iter()
            .find(|a| a.worker_id == worker)
            .map_or_else(|| worker.to_owned(), |a| a.name.clone())
    }

    pub(super) async fn run(&mut self, crew: &Crew, run_id: &str) {
        let sent = self.sent;
        let control = crew.keys.control(&crew.session);
        let mut conn = crew.conn.clone();
        self.conn = Some(crew.conn.clone());
        let block = (crew.timeout / 2).clamp(Duration::from_millis(1), Duration::from_millis(500));
        let mut reader = None;
        let mut aborted: Option<Instant> = None;
        // A worker that does not answer a stop within this long is given up on.
        let grace = crew.timeout * 2 + Duration::from_secs(2);
        // Redis not answering for this long ends the wait: no worker could say anything.
        let silence = (crew.timeout * 3).max(Duration::from_secs(2));
        let mut answered = Instant::now();
        let mut looked = Instant::now();
        while self.phase.values().any(|p| *p != Stage::Ended) {
            if self.stop.is_cancelled() && aborted.is_none() {
                let _ = send(&mut conn, &control, "abort", run_id, crew.secret.as_ref()).await;
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
                    .filter(|(_, p)| **p == Stage::Preparing)
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
                && self.phase.values().all(|p| *p == Stage::Ready)
            {
                match send(&mut conn, &control, "go", run_id, crew.secret.as_ref()).await {
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
                self.phase.insert(worker.to_owned(), Stage::Ready);
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
        self.phase.insert(worker.to_owned(), Stage::Ended);
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
                        status: self.workload.status_of(u, round),
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
        // Struck off first: a write it sends from now on (a stalled process waking up) is
        // refused by Redis. Best effort: the run's keys, this one too, go at cleanup anyway.
        if let Some(conn) = self.conn.as_mut() {
            let _: redis::RedisResult<()> = conn.hdel(&self.admission, worker).await;
        }
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
