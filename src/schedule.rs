//! Chosen interleavings (`--schedule "1 2 1 2"`, README "Schedules").
//!
//! Every strategy's update is a short sequence of steps, one Redis round trip each (each
//! strategy's file names its steps). In a scheduled run every step waits at a [`Gate`] until the
//! schedule lets that updater take it, so which updater's command reaches Redis first is the
//! schedule's choice, not the machine's timing: a real Redis still answers, so a WATCH really
//! aborts and a lock really expires. A free run has no gate at all.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// One token of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Token {
    /// Updater number `n` (1-based, as shown everywhere) takes its next step.
    Step(u32),
    /// Time passes: long enough for the lock's ttl to run out (`t`).
    Wait,
}

/// The interleaving a scheduled run follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub tokens: Vec<Token>,
}

impl Schedule {
    /// Parses `1 2 1 2`, `1,2,1,2` or `1 2 t 2`. Says which token is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let mut tokens = Vec::new();
        for (k, word) in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .enumerate()
        {
            let token = match word {
                "t" | "T" => Token::Wait,
                _ => match word.parse::<u32>() {
                    Ok(n) if n >= 1 => Token::Step(n),
                    _ => {
                        return Err(format!(
                            "token {} of the schedule, '{word}', is neither an updater number (1, 2, …) nor t (time passes)",
                            k + 1
                        ));
                    }
                },
            };
            tokens.push(token);
        }
        if tokens.is_empty() {
            return Err(
                "the schedule is empty; list updater numbers, e.g. --schedule \"1 2 1 2\""
                    .to_owned(),
            );
        }
        Ok(Schedule { tokens })
    }

    /// Refuses a token for an updater the run does not have.
    pub fn check(&self, updaters: u32) -> Result<(), String> {
        for (k, token) in self.tokens.iter().enumerate() {
            if let Token::Step(n) = token
                && *n > updaters
            {
                return Err(format!(
                    "token {} of the schedule names updater #{n}, and the run has {updaters}; use numbers from 1 to {updaters} (or more updaters with -n)",
                    k + 1
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Schedule {
    /// The form `--schedule` takes back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<String> = self
            .tokens
            .iter()
            .map(|t| match t {
                Token::Step(n) => n.to_string(),
                Token::Wait => "t".to_owned(),
            })
            .collect();
        f.write_str(&words.join(" "))
    }
}

/// What a step does to the journey, so whoever drives a run can tell what a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads what the update will change.
    Read,
    /// Writes the update without a copy of anything read before (a script, a hash field).
    Write,
    /// Writes back a copy of what an earlier step read: stale if someone wrote in between.
    WriteBack,
    /// Tries to take the journey's lock.
    Lock,
    /// Releases the lock.
    Unlock,
}

/// A step as its updater waits to take it: the Redis command it will send, in a user's words
/// (`SET journey`, `EXEC (WATCHed journey)`, `SET lock NX PX 6000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub role: Role,
    pub command: Cow<'static, str>,
}

impl Step {
    pub fn new(role: Role, command: impl Into<Cow<'static, str>>) -> Step {
        Step {
            role,
            command: command.into(),
        }
    }
}

/// Where each updater of a scheduled run is.
#[derive(Debug, Default)]
struct Places {
    /// Waiting at a gate before its next step.
    at_gate: Vec<bool>,
    /// Let through, and not yet through.
    granted: Vec<bool>,
    /// Made all its updates.
    done: Vec<bool>,
    /// The step each waiting updater will take next.
    next: Vec<Option<Step>>,
    /// Redis's reply to each updater's latest step, as its updater read it.
    reply: Vec<Option<Cow<'static, str>>>,
    /// Every gate stands open: the rest of the run goes free ([`Driver::free`]).
    free: bool,
}

impl Places {
    /// Nobody is between two gates: the next token can be taken.
    fn settled(&self) -> bool {
        (0..self.done.len()).all(|u| self.at_gate[u] || self.done[u])
    }
}

/// One step a scheduled run took: which updater (1-based) and which were waiting to take one.
/// The steps of a run, in order, are the schedule that ran; the waiting ones are where
/// `racelab prove` branches. What the step sent and what Redis answered come along for whoever
/// shows the steps (the TUI's step mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub updater: u32,
    pub waiting: Vec<u32>,
    pub step: Option<Step>,
    /// `None` when the updater's step ended with no reply it could name (it was stopped).
    pub reply: Option<Cow<'static, str>>,
}

/// The gate before every step of a scheduled run's updaters, and the driver that opens it one
/// step at a time as the schedule says.
#[derive(Debug)]
pub struct Gate {
    places: Mutex<Places>,
    changed: Notify,
    taken: Mutex<Vec<Choice>>,
}

/// How long past the lock's ttl a `t` token waits: the expiry is Redis's, on Redis's clock.
const WAIT_MARGIN: Duration = Duration::from_millis(50);

impl Gate {
    pub fn new(updaters: u32) -> Gate {
        let n = updaters as usize;
        Gate {
            places: Mutex::new(Places {
                at_gate: vec![false; n],
                granted: vec![false; n],
                done: vec![false; n],
                next: vec![None; n],
                reply: vec![None; n],
                free: false,
            }),
            changed: Notify::new(),
            taken: Mutex::new(Vec::new()),
        }
    }

    /// The steps taken so far, in order.
    pub fn taken(&self) -> Vec<Choice> {
        self.record().clone()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Places) -> T) -> T {
        let mut places = match self.places.lock() {
            Ok(places) => places,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut places)
    }

    /// Waits until `ready` holds, without missing a change that happens meanwhile.
    async fn until(&self, ready: impl Fn(&Places) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.with(|p| ready(p)) {
                return;
            }
            changed.await;
        }
    }

    /// Updater `updater` (0-based) waits here before `step` until the schedule lets it through.
    pub async fn pass(&self, updater: u32, step: Step) {
        let u = updater as usize;
        let free = self.with(|p| {
            if !p.free {
                p.at_gate[u] = true;
                p.next[u] = Some(step);
            }
            p.free
        });
        if free {
            return;
        }
        self.changed.notify_waiters();
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let through = self.with(|p| {
                if p.granted[u] || p.free {
                    p.granted[u] = false;
                    p.at_gate[u] = false;
                    true
                } else {
                    false
                }
            });
            if through {
                self.changed.notify_waiters();
                return;
            }
            changed.await;
        }
    }

    /// Redis answered updater `updater`'s (0-based) step with `reply`.
    pub fn answered(&self, updater: u32, reply: Cow<'static, str>) {
        self.with(|p| p.reply[updater as usize] = Some(reply));
    }

    /// Updater `updater` made all its updates (or was stopped).
    pub fn finished(&self, updater: u32) {
        let u = updater as usize;
        self.with(|p| {
            p.done[u] = true;
            p.at_gate[u] = false;
        });
        self.changed.notify_waiters();
    }

    /// Lets updater `u` take one step, waits until it is at its next gate or done, and says
    /// what the step sent and what Redis answered.
    async fn step(&self, u: usize) -> Choice {
        let (waiting, step) = self.with(|p| {
            let waiting = (0..p.at_gate.len())
                .filter(|&w| p.at_gate[w])
                .map(|w| w as u32 + 1)
                .collect();
            p.reply[u] = None;
            p.granted[u] = true;
            (waiting, p.next[u].take())
        });
        let choice = Choice {
            updater: u as u32 + 1,
            waiting,
            step,
            reply: None,
        };
        self.record().push(choice.clone());
        self.changed.notify_waiters();
        self.until(|p| !p.granted[u] && (p.at_gate[u] || p.done[u]))
            .await;
        let reply = self.with(|p| p.reply[u].take());
        let mut taken = self.record();
        if let Some(last) = taken.last_mut() {
            last.reply.clone_from(&reply);
        }
        Choice { reply, ..choice }
    }

    /// The steps taken, to add to.
    fn record(&self) -> std::sync::MutexGuard<'_, Vec<Choice>> {
        self.taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens the gates as `schedule` says, then takes the steps left one at a time in updater
    /// order, until every updater is done. `ttl` is the lock's, for `t`. Says which token could
    /// not be taken, if one could not.
    pub async fn drive(&self, schedule: &Schedule, ttl: Duration) -> Result<(), String> {
        self.until(Places::settled).await;
        for (k, token) in schedule.tokens.iter().enumerate() {
            match *token {
                Token::Wait => tokio::time::sleep(ttl + WAIT_MARGIN).await,
                Token::Step(n) => {
                    let u = n.saturating_sub(1) as usize;
                    if self.with(|p| p.done.get(u).copied().unwrap_or(true)) {
                        return Err(format!(
                            "token {} of the schedule lets updater #{n} take a step, and #{n} has already made all its updates; shorten the schedule (steps left over run by themselves)",
                            k + 1
                        ));
                    }
                    self.step(u).await;
                }
            }
        }
        loop {
            self.until(Places::settled).await;
            let next = self.with(|p| (0..p.done.len()).find(|&u| p.at_gate[u]));
            match next {
                Some(u) => {
                    self.step(u).await;
                }
                None => return Ok(()),
            }
        }
    }

    /// Opens every gate for good: from now on the updaters run free.
    fn open(&self) {
        self.with(|p| {
            p.free = true;
            p.at_gate.iter_mut().for_each(|g| *g = false);
        });
        self.changed.notify_waiters();
    }
}

/// A scheduler that someone drives (the TUI's step mode, a test): hand it to the engine in
/// [`crate::Settings::driver`] and the run's updaters take a step only when [`Driver::step`]
/// says so. A fixed `--schedule` and `racelab prove` open the same gate.
#[derive(Debug, Clone)]
pub struct Driver {
    gate: std::sync::Arc<Gate>,
    updaters: u32,
    /// How many [`Hold`]s keep the run from ending.
    holds: tokio::sync::watch::Sender<usize>,
}

/// While it lives, the driven run does not end (see [`Driver::hold`]).
pub struct Hold(tokio::sync::watch::Sender<usize>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Driver {
    /// A driver for a run of `updaters` updaters.
    pub fn new(updaters: u32) -> Driver {
        Driver {
            gate: std::sync::Arc::new(Gate::new(updaters)),
            updaters,
            holds: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Keeps the run from ending (its final read, its keys' deletion) until the hold is dropped:
    /// whoever drives it reads the journey after each step, the last one too, and must find it
    /// still there.
    pub fn hold(&self) -> Hold {
        self.holds.send_modify(|n| *n += 1);
        Hold(self.holds.clone())
    }

    /// Once nobody holds the run (at once when nobody ever did).
    pub async fn unheld(&self) {
        let mut holds = self.holds.subscribe();
        let _ = holds.wait_for(|n| *n == 0).await;
    }

    pub fn updaters(&self) -> u32 {
        self.updaters
    }

    pub(crate) fn gate(&self) -> std::sync::Arc<Gate> {
        self.gate.clone()
    }

    /// Waits until no updater is between two gates, and says which (1-based) wait to take a
    /// step; none once every updater is done.
    pub async fn waiting(&self) -> Vec<u32> {
        self.gate.until(Places::settled).await;
        self.gate.with(|p| {
            (0..p.at_gate.len())
                .filter(|&u| p.at_gate[u])
                .map(|u| u as u32 + 1)
                .collect()
        })
    }

    /// Like [`Driver::waiting`], with the step each waiting updater will take.
    pub async fn next_steps(&self) -> Vec<(u32, Option<Step>)> {
        self.gate.until(Places::settled).await;
        self.gate.with(|p| {
            (0..p.at_gate.len())
                .filter(|&u| p.at_gate[u])
                .map(|u| (u as u32 + 1, p.next[u].clone()))
                .collect()
        })
    }

    /// Lets updater `updater` (1-based) take its next step, waits until it has, and says what
    /// it sent and what Redis answered.
    pub async fn step(&self, updater: u32) -> Result<Choice, String> {
        let waiting = self.waiting().await;
        if !waiting.contains(&updater) {
            return Err(format!(
                "updater #{updater} is not waiting to take a step (waiting: {waiting:?})"
            ));
        }
        Ok(self.gate.step(updater as usize - 1).await)
    }

    /// Lets every updater run the rest of the run free, as if there were no driver.
    pub fn free(&self) {
        self.gate.open();
    }

    /// The steps taken so far: the schedule `run --schedule` would replay.
    pub fn taken(&self) -> Vec<Choice> {
        self.gate.taken()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_say_which_token_is_wrong() {
        let s = Schedule::parse("1 2, 1,2 t 2").unwrap();
        assert_eq!(s.to_string(), "1 2 1 2 t 2");
        assert!(s.check(2).is_ok());
        let err = s.check(1).unwrap_err();
        assert!(err.contains("token 2") && err.contains("#2"), "{err}");
        let err = Schedule::parse("1 x 2").unwrap_err();
        assert!(err.contains("token 2") && err.contains("'x'"), "{err}");
        assert!(Schedule::parse("0").is_err());
        assert!(Schedule::parse(" , ").is_err());
    }
}
