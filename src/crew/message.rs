//! The crew's messages: what a coordinator tells its workers on its session's control stream (a
//! job, the release, a stop, the session's end), and how each is written and read.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::strategy::Strategy;
use crate::target::Conn;
use crate::workload::Workload;

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
    /// The token the worker's writes carry: the run's admission hash holds it until the
    /// coordinator takes the worker for gone (README "Workers").
    #[serde(default)]
    pub token: String,
}

impl Job {
    pub(crate) fn share_of(&self, worker_id: &str) -> Option<&Assignment> {
        self.shares.iter().find(|a| a.worker_id == worker_id)
    }
}

/// A crew's shared secret (`--crew-secret`, README "Workers"): the coordinator signs what it
/// tells its workers with it, and a worker that holds it follows nothing unsigned. Never
/// printed, not even in a debug dump.
#[derive(Clone, PartialEq, Eq)]
pub struct CrewSecret(String);

impl std::fmt::Debug for CrewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CrewSecret(***)")
    }
}

impl CrewSecret {
    /// The secret `--crew-secret` names. Checked by [`CrewSecret::check`], not here: a value
    /// clap refuses is printed back, and a secret must never be.
    pub fn parse(text: &str) -> Result<CrewSecret, String> {
        Ok(CrewSecret(text.to_owned()))
    }

    /// Refuses a secret too short to keep anyone out, without saying it.
    pub fn check(&self) -> Result<(), crate::error::Error> {
        if self.0.chars().count() < 16 {
            return Err(crate::error::Error::Usage(
                "--crew-secret needs at least 16 characters; use a long random one, e.g. openssl rand -hex 32".to_owned(),
            ));
        }
        Ok(())
    }

    /// The signature of a control message: HMAC-SHA256 over the control stream (which names
    /// the session, so a message cannot be replayed into another), its kind and its body.
    pub(crate) fn sign(&self, control: &str, kind: &str, body: &str) -> String {
        let mut mac = self.mac();
        for part in [control, kind, body] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `signature` is this secret's for the message (compared in constant time).
    pub(crate) fn verifies(&self, control: &str, kind: &str, body: &str, signature: &str) -> bool {
        let Some(bytes) = hex(signature) else {
            return false;
        };
        let mut mac = self.mac();
        for part in [control, kind, body] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.verify_slice(&bytes).is_ok()
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Appends a message of kind `kind` to the control stream, signed when the crew has a secret.
pub(super) async fn send(
    conn: &mut Conn,
    control: &str,
    kind: &str,
    body: &str,
    secret: Option<&CrewSecret>,
) -> redis::RedisResult<()> {
    send_naming(conn, control, kind, body, None, secret).await
}

/// [`send`], naming the run's events stream too (a job does, so that even a worker that cannot
/// read the job can answer on it).
pub(super) async fn send_naming(
    conn: &mut Conn,
    control: &str,
    kind: &str,
    body: &str,
    events: Option<&str>,
    secret: Option<&CrewSecret>,
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
    if let Some(secret) = secret {
        add.arg("s").arg(secret.sign(control, kind, body));
    }
    add.ignore();
    pipe.cmd("PEXPIRE")
        .arg(control)
        .arg(CONTROL_TTL.as_millis() as u64)
        .ignore();
    pipe.query_async(conn).await
}

/// Control messages kept: about twenty runs' worth.
const CONTROL_KEPT: usize = 64;

/// How long the control stream outlives its last renewal: long enough for a worker to read
/// the session's end.
pub(super) const CONTROL_TTL: Duration = Duration::from_secs(60);

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
