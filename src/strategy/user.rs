//! Users' own strategies (README "Race your own service"): `-s exec:CMD`, a journey service in
//! any language behind JSON lines (the process is [`crate::exec`]'s), and `-s lua:FILE`, a
//! script of one's own, on the seed's JSON layout: `KEYS[1]` is the journey's key, `ARGV[1]` the
//! segment id, `ARGV[2]` the new status, `ARGV[3]` the updater (1-based). An error reply refuses
//! the update; anything else applies it.
//!
//! A [`Strategy`] is a small `Copy` value everywhere in racelab; a user's strategy is one too,
//! [`Strategy::User`], naming an entry of this process's registry, made when `-s` is parsed and
//! kept for the life of the process.

use std::sync::{Arc, Mutex};

use redis::Script;
use serde_json::json;

use super::{Context, Facts, Op, Storage, UpdateError, UpdateStatus, invoke};
use crate::error::Error;
use crate::event::{Outcome, Probe, WriteScope};
use crate::exec::{Reply, Service};
use crate::schedule::{Role, Step};
use crate::target::Conn;

/// What a user's strategy runs.
#[derive(Debug)]
pub enum Spec {
    /// A shell command: the journey service.
    Exec(String),
    /// A Lua script, read when `-s` is parsed.
    Lua(UserScript),
}

/// A user's strategy: what it runs and the facts every strategy has.
pub struct UserStrategy {
    pub spec: Spec,
    pub facts: Facts,
}

/// An entry of the registry: what [`crate::strategy::Strategy::User`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(u16);

/// Every user strategy named in this process, by [`UserId`]; entries live as long as the
/// process (a handful at most), so each can be handed out as `&'static`.
static REGISTRY: Mutex<Vec<&'static UserStrategy>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<&'static UserStrategy>> {
    REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `text` names a user's strategy (`exec:…`, `lua:…`).
pub fn is_user(text: &str) -> bool {
    text.starts_with("exec:") || text.starts_with("lua:")
}

/// Registers `exec:CMD` or `lua:FILE` (once per name); says what is wrong with it.
pub fn register(text: &str) -> Result<UserId, String> {
    let mut registry = registry();
    if let Some(k) = registry.iter().position(|u| u.facts.name == text) {
        return Ok(UserId(k as u16));
    }
    let (spec, how, step, cjson) = if let Some(command) = text.strip_prefix("exec:") {
        if command.trim().is_empty() {
            return Err("exec: needs a command, e.g. -s exec:'python3 my_service.py'".to_owned());
        }
        (
            Spec::Exec(command.to_owned()),
            "your journey service, one JSON line per request (README \"Race your own service\")",
            "update (one request to the service)",
            false,
        )
    } else if let Some(path) = text.strip_prefix("lua:") {
        (
            Spec::Lua(UserScript::read(path)?),
            "your Lua script, called with KEYS[1] the journey and ARGV segment, status, updater",
            "update (EVALSHA of your script)",
            true,
        )
    } else {
        return Err(format!("'{text}' is neither exec:CMD nor lua:FILE"));
    };
    if registry.len() >= usize::from(u16::MAX) {
        return Err("too many exec: and lua: strategies in one process".to_owned());
    }
    let name: &'static str = Box::leak(text.to_owned().into_boxed_str());
    let steps: &'static [&'static str] = Box::leak(Box::new([step]));
    let user: &'static UserStrategy = Box::leak(Box::new(UserStrategy {
        spec,
        facts: Facts {
            name,
            how,
            steps,
            storage: Storage::Document,
            scope: WriteScope::Journey,
            cjson,
            // racelab cannot know what someone else's code does: any result is possible.
            loses: |_| None,
            looks_right: None,
            wrong: None,
            shown_by: None,
            expires: false,
        },
    }));
    registry.push(user);
    Ok(UserId((registry.len() - 1) as u16))
}

impl UserId {
    pub fn get(self) -> &'static UserStrategy {
        // Only `register` makes ids, from entries it pushed; the registry never shrinks.
        registry()[usize::from(self.0)]
    }
}

/// A user's script, read when `-s` is parsed.
#[derive(Debug)]
pub struct UserScript {
    pub path: String,
    pub script: Script,
}

impl UserScript {
    pub fn read(path: &str) -> Result<UserScript, String> {
        if path.trim().is_empty() {
            return Err("lua: needs a file, e.g. -s lua:my_fix.lua".to_owned());
        }
        let source = std::fs::read_to_string(path).map_err(|e| {
            format!("cannot read the Lua script {path} ({e}); check the path after lua:")
        })?;
        Ok(UserScript {
            path: path.to_owned(),
            script: Script::new(&source),
        })
    }

    /// Redis's message for a script error, as the script's own message and line:
    /// `my_fix.lua line 3: attempt to compare nil with number`.
    pub fn explain(&self, error: &str) -> String {
        match script_line(error) {
            Some((line, message)) => format!("{} line {line}: {message}", self.path),
            None => format!("{}: {error}", self.path),
        }
    }
}

/// The line and message in Redis's report of a script error (`user_script:3: message …`).
fn script_line(error: &str) -> Option<(u32, String)> {
    let at = error.find("user_script:")?;
    let rest = &error[at + "user_script:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let line: u32 = digits.parse().ok()?;
    let message = rest[digits.len()..].trim_start_matches(':').trim();
    // Redis appends where the script is: ` script: <sha>, on @user_script:3.`
    let message = message
        .split(" script: ")
        .next()
        .unwrap_or(message)
        .trim()
        .to_owned();
    Some((line, message))
}

/// Before a run: a user's script is loaded once, so a script that does not compile is one
/// sentence with its line, not an error per update.
pub(crate) async fn prepare(
    id: UserId,
    target: &crate::target::Target,
    conn: &mut Conn,
) -> Result<(), Error> {
    let Spec::Lua(script) = &id.get().spec else {
        return Ok(());
    };
    script
        .script
        .prepare_invoke()
        .load_async(conn)
        .await
        .map(|_: String| ())
        .map_err(|e| match e.kind() {
            redis::ErrorKind::Server(_) => Error::Usage(format!(
                "the Lua script does not load: {}; fix the script",
                script.explain(&crate::redis_errors::describe(&e))
            )),
            _ => target.refused(&e),
        })
}

/// One updater of a user's strategy.
pub(crate) enum UserUpdater {
    Exec(Arc<Service>),
    Lua {
        conn: Conn,
        script: &'static UserScript,
    },
}

impl UserUpdater {
    pub(crate) fn new(id: UserId, cx: &Context<'_>) -> Result<UserUpdater, Error> {
        match &id.get().spec {
            Spec::Exec(command) => cx.service.cloned().map(UserUpdater::Exec).ok_or_else(|| {
                Error::Usage(format!(
                    "exec:{command} runs in racelab run only for now; race it with racelab run"
                ))
            }),
            Spec::Lua(script) => Ok(UserUpdater::Lua {
                conn: cx.shared.clone(),
                script,
            }),
        }
    }

    pub(crate) async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        match self {
            UserUpdater::Exec(service) => {
                // The service does its own reading and pausing: racelab only sends the request,
                // all of a round's at once, and times it.
                probe
                    .writing(|| Step::new(Role::Write, "update (a request to the service)"))
                    .await;
                // Whatever the service reads, it reads after this: the bound attribution uses.
                probe.read(None, None).await;
                let request = json!({
                    "op": "update",
                    "journey_id": op.journey_id,
                    "segment_id": op.segment_id,
                    "status": op.status,
                    "updater": probe.updater + 1,
                });
                match service.ask(request).await {
                    Reply::Ok(_) => {
                        probe.answered(|| "ok".into());
                        Ok(UpdateStatus::Applied)
                    }
                    Reply::Refused(error) => Err(UpdateError {
                        outcome: Outcome::NotApplied,
                        reason: format!("the service refused the update: {error}"),
                        fatal: false,
                        gave_up: false,
                        unreachable: false,
                    }),
                    Reply::Silent => Err(UpdateError {
                        outcome: Outcome::Unknown,
                        reason: "the service did not answer within --timeout".to_owned(),
                        fatal: false,
                        gave_up: false,
                        unreachable: false,
                    }),
                    broken @ Reply::Broken(_) => Err(UpdateError {
                        outcome: Outcome::Unknown,
                        reason: service.failed("update", broken),
                        fatal: true,
                        gave_up: false,
                        unreachable: false,
                    }),
                }
            }
            UserUpdater::Lua { conn, script } => {
                super::think(op).await?;
                probe
                    .writing(|| Step::new(Role::Write, format!("EVALSHA {}", script.path)))
                    .await;
                // Whatever the script reads, it reads after this: the bound attribution uses.
                probe.read(None, None).await;
                let mut invocation = script.script.key(op.keys.journey());
                invocation
                    .arg(op.segment_id)
                    .arg(op.status)
                    .arg(probe.updater + 1);
                match invoke::<redis::Value>(&invocation, conn).await {
                    Ok(_) => {
                        probe.answered(|| "applied".into());
                        Ok(UpdateStatus::Applied)
                    }
                    Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => Err(UpdateError {
                        outcome: Outcome::NotApplied,
                        reason: script.explain(&crate::redis_errors::describe(&e)),
                        fatal: false,
                        gave_up: false,
                        unreachable: false,
                    }),
                    Err(e) => Err(UpdateError::during_write(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_errors_name_the_line_and_the_message() {
        assert_eq!(
            script_line(
                "ERR user_script:3: attempt to compare nil with number script: 1f0e, on @user_script:3."
            ),
            Some((3, "attempt to compare nil with number".to_owned()))
        );
        assert_eq!(
            script_line(
                "ERR Error compiling script (new function): user_script:2: '=' expected near 'x'"
            ),
            Some((2, "'=' expected near 'x'".to_owned()))
        );
        assert_eq!(script_line("WRONGTYPE Operation against a key"), None);
    }
}
