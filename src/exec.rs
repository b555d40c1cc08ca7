//! `-s exec:CMD`: a journey service in any language, raced through its own code (README "Race
//! your own service").
//!
//! racelab starts `CMD` once per run through `sh -c`, with `REDIS_URL` and `RACELAB_KEY_PREFIX`
//! in its environment, and speaks JSON lines with it: one request per line on its stdin, one
//! reply per line on its stdout, matched by `id`, in any order. A [`Service`] is that process
//! and the tasks that feed it and read it; every updater of the run sends through it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use crate::journey::{Journey, SegmentState};

/// The program's last stderr lines kept, to show when it fails.
const STDERR_KEPT: usize = 20;
/// A reply line longer than this is not a journey service's.
const LINE_LIMIT: usize = 64 * 1024 * 1024;

/// What became of one request.
#[derive(Debug)]
pub enum Reply {
    /// `{"ok":true, …}`, with the rest of the object.
    Ok(Value),
    /// `{"ok":false,"error":"…"}`: the program says it did not do it.
    Refused(String),
    /// No reply within the timeout: the program may or may not have done it.
    Silent,
    /// The program broke the protocol or ended: nothing more can be asked of it.
    Broken(String),
}

/// Where a run's service can be found while the run goes on: the engine puts it there once the
/// journey is stored, and takes it away when the run is over.
#[derive(Clone, Default)]
pub struct ServiceSlot(Arc<Mutex<Option<Arc<Service>>>>);

impl ServiceSlot {
    pub fn get(&self) -> Option<Arc<Service>> {
        lock(&self.0).clone()
    }

    pub(crate) fn put(&self, service: Option<Arc<Service>>) {
        *lock(&self.0) = service;
    }
}

impl std::fmt::Debug for ServiceSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceSlot")
    }
}

/// The program and the tasks around it.
pub struct Service {
    command: String,
    requests: mpsc::UnboundedSender<String>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    stderr: Arc<Mutex<VecDeque<String>>>,
    timeout: Duration,
    child: Mutex<Option<Child>>,
}

/// Requests sent and not yet answered, and why the program can answer no more.
#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Reply>>,
    /// Requests nobody waits for any more (their timeout passed): a late reply is dropped.
    expired: HashSet<u64>,
    /// The updates among `waiting`.
    updates: HashSet<u64>,
    broken: Option<String>,
    in_flight_max: u64,
}

impl Pending {
    /// The program can answer no more: every request still waiting gets `why`.
    fn break_down(&mut self, why: String) {
        if self.broken.is_none() {
            self.broken = Some(why.clone());
        }
        for (_, waiter) in self.waiting.drain() {
            let _ = waiter.send(Reply::Broken(why.clone()));
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    id: Option<u64>,
    ok: Option<bool>,
    error: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

impl Service {
    /// Starts `command` through the shell, for one run under `prefix`.
    pub fn start(
        command: &str,
        redis_url: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Service, String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("REDIS_URL", redis_url)
            .env("RACELAB_KEY_PREFIX", prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start `sh -c {command}` ({e})"))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the program's stdin, stdout and stderr could not be opened".to_owned());
        };
        let pending: Arc<Mutex<Pending>> = Arc::default();
        let kept: Arc<Mutex<VecDeque<String>>> = Arc::default();

        let (requests, mut lines) = mpsc::unbounded_channel::<String>();
        let writer_pending = pending.clone();
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                if let Err(e) = stdin.write_all(line.as_bytes()).await {
                    lock(&writer_pending).break_down(format!("it stopped reading its stdin ({e})"));
                    return;
                }
                let _ = stdin.flush().await;
            }
        });

        let reader_pending = pending.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) => {
                        lock(&reader_pending)
                            .break_down("it closed its stdout (it exited)".to_owned());
                        return;
                    }
                    Err(e) => {
                        lock(&reader_pending).break_down(format!("its stdout failed ({e})"));
                        return;
                    }
                    Ok(_) if line.len() > LINE_LIMIT => {
                        lock(&reader_pending)
                            .break_down("it wrote a line of more than 64 MiB".to_owned());
                        return;
                    }
                    Ok(_) => {}
                }
                let text = line.trim();
                if text.is_empty() {
                    continue;
                }
                if let Err(why) = answer(&reader_pending, text) {
                    lock(&reader_pending).break_down(why);
                    return;
                }
            }
        });

        let stderr_kept = kept.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut kept = lock(&stderr_kept);
                if kept.len() == STDERR_KEPT {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });

        Ok(Service {
            command: command.to_owned(),
            requests,
            pending,
            next_id: AtomicU64::new(1),
            stderr: kept,
            timeout,
            child: Mutex::new(Some(child)),
        })
    }

    /// Sends `request` (without its id) and waits for the reply, at most the timeout. Only
    /// updates count towards the requests in flight.
    pub async fn ask(&self, mut request: Value) -> Reply {
        let update = request["op"] == "update";
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if let Some(why) = &pending.broken {
                return Reply::Broken(why.clone());
            }
            pending.waiting.insert(id, tx);
            if update {
                pending.updates.insert(id);
                pending.in_flight_max = pending.in_flight_max.max(pending.updates.len() as u64);
            }
        }
        let mut line = request.to_string();
        line.push('\n');
        if self.requests.send(line).is_err() {
            lock(&self.pending).waiting.remove(&id);
            return Reply::Broken("its stdin is closed".to_owned());
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Reply::Broken("it stopped answering".to_owned()),
            Err(_) => {
                // A reply that comes later is for a request nobody waits for any more: it is
                // dropped, not taken for an unknown id.
                let mut pending = lock(&self.pending);
                pending.waiting.remove(&id);
                pending.updates.remove(&id);
                pending.expired.insert(id);
                Reply::Silent
            }
        }
    }

    /// `init`: the program stores the journey.
    pub async fn init(&self, journey: &Journey) -> Result<(), String> {
        let doc: Value = serde_json::from_str(&journey.to_json())
            .map_err(|e| format!("the journey does not encode ({e})"))?;
        match self.ask(json!({"op": "init", "journey": doc})).await {
            Reply::Ok(_) => Ok(()),
            other => Err(self.failed("init", other)),
        }
    }

    /// `get`: the journey as the program reads it back, as each segment's status.
    pub async fn get(&self, journey: &Journey) -> Result<Vec<SegmentState>, String> {
        let reply = self
            .ask(json!({"op": "get", "journey_id": journey.id}))
            .await;
        let body = match reply {
            Reply::Ok(body) => body,
            other => return Err(self.failed("get", other)),
        };
        let doc = body
            .get("journey")
            .ok_or_else(|| "its reply to get has no \"journey\"".to_owned())?;
        let read: Journey = serde_json::from_value(doc.clone())
            .map_err(|e| format!("its reply to get is not a journey in the seed's format ({e})"))?;
        Ok(journey
            .segments
            .iter()
            .map(|s| match read.segment_index(&s.segment_id) {
                Some(i) => SegmentState {
                    status: read.segments[i].status.clone(),
                    update_count: read.segments[i].update_count,
                },
                None => SegmentState {
                    status: String::new(),
                    update_count: 0,
                },
            })
            .collect())
    }

    /// The most requests that were in flight at once: whether the program raced at all.
    pub fn in_flight_max(&self) -> u64 {
        lock(&self.pending).in_flight_max
    }

    /// One sentence for a request that did not succeed, with the program's last stderr lines.
    pub fn failed(&self, op: &str, reply: Reply) -> String {
        let what = match reply {
            Reply::Ok(_) => return format!("its {op} succeeded"),
            Reply::Refused(error) => format!("it refused {op}: {error}"),
            Reply::Silent => format!(
                "it did not answer {op} within {}",
                humantime::format_duration(self.timeout)
            ),
            Reply::Broken(why) => why,
        };
        format!(
            "the journey service `{}` failed: {what}{}",
            self.command,
            self.stderr_tail()
        )
    }

    /// Why the program can answer no more, if it can't.
    pub fn broken(&self) -> Option<String> {
        lock(&self.pending).broken.clone()
    }

    /// The program's last stderr lines, as a suffix for a message.
    pub fn stderr_tail(&self) -> String {
        let kept = lock(&self.stderr);
        if kept.is_empty() {
            String::new()
        } else {
            let lines: Vec<String> = kept.iter().map(|line| harmless(line)).collect();
            format!("; its last stderr lines:\n  {}", lines.join("\n  "))
        }
    }

    /// Ends the program: its stdin closes, and it is killed if it lingers.
    pub async fn stop(&self) {
        let child = lock(&self.child).take();
        if let Some(mut child) = child {
            let _ = tokio::time::timeout(Duration::from_millis(500), child.wait()).await;
            let _ = child.kill().await;
        }
    }
}

/// Hands one reply line to the request it answers.
fn answer(pending: &Mutex<Pending>, text: &str) -> Result<(), String> {
    let answer: Answer = serde_json::from_str(text)
        .map_err(|_| format!("it wrote a line that is not a JSON object: {}", shown(text)))?;
    let Some(id) = answer.id else {
        return Err(format!("it wrote a reply without an id: {}", shown(text)));
    };
    let mut pending = lock(pending);
    if pending.expired.remove(&id) {
        return Ok(());
    }
    pending.updates.remove(&id);
    let Some(waiter) = pending.waiting.remove(&id) else {
        return Err(format!(
            "it answered id {id}, which was never sent (or was already answered)"
        ));
    };
    let reply = match answer.ok {
        Some(true) => Reply::Ok(Value::Object(answer.rest)),
        Some(false) => Reply::Refused(answer.error.unwrap_or_else(|| "no reason given".to_owned())),
        None => {
            return Err(format!(
                "its reply to id {id} has no \"ok\": {}",
                shown(text)
            ));
        }
    };
    let _ = waiter.send(reply);
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A program's line as a sentence may quote it: its first 120 characters, control characters
/// escaped, so that whatever it wrote cannot move the cursor or clear the user's terminal.
fn shown(text: &str) -> String {
    harmless(&text.chars().take(120).collect::<String>())
}

/// `text` with its control characters escaped (a tab is kept): a program's output as racelab
/// prints it.
fn harmless(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One line a program wrote, taken as a reply to request 7, the one waiting (the fuzz target's
/// way in, `tests/fuzz`): `Err` is the sentence that ends the run, which must be one line.
pub(crate) fn take_reply_line(line: &str) -> Result<(), String> {
    let pending: Mutex<Pending> = Mutex::default();
    let (tx, _rx) = oneshot::channel();
    lock(&pending).waiting.insert(7, tx);
    answer(&pending, line.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Whatever line a program writes, racelab takes it as a reply, drops it, or says in
        /// one sentence why the program broke the protocol: never a panic.
        #[test]
        fn any_line_from_a_program_is_a_reply_or_one_sentence_without_control_characters(
            line in prop_oneof![
                ".{0,80}",
                "\\PC{0,4}[\\x00-\\x1f\\x7f]{1,3}.{0,8}",
                r#"\{"id":[0-9]{1,3},"ok":(true|false|1|null)(,"error":".{0,10}")?\}"#,
                r#"\{"id":-?[0-9]{1,25}(\.[0-9])?,"ok":true,"journey":.{0,20}\}"#,
            ],
        ) {
            if let Err(why) = take_reply_line(&line) {
                prop_assert!(
                    !why.is_empty() && !why.contains(|c: char| c.is_control() && c != '\t'),
                    "{why}"
                );
            }
        }
    }

    #[test]
    fn a_reply_goes_to_the_request_it_answers_and_an_unknown_id_breaks_the_protocol() {
        let pending: Mutex<Pending> = Mutex::default();
        let (tx, mut rx) = oneshot::channel();
        lock(&pending).waiting.insert(3, tx);
        assert!(answer(&pending, r#"{"id":3,"ok":false,"error":"no such segment"}"#).is_ok());
        assert!(matches!(rx.try_recv(), Ok(Reply::Refused(e)) if e == "no such segment"));
        let why = answer(&pending, r#"{"id":3,"ok":true}"#).unwrap_err();
        assert!(why.contains("never sent"), "{why}");
        // A reply to a request whose timeout passed is dropped, not an error.
        lock(&pending).expired.insert(9);
        assert!(answer(&pending, r#"{"id":9,"ok":true}"#).is_ok());
    }
}
