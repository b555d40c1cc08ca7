//! `function`: the same read-modify-write as `lua` (one Lua source, `assets/update_segment.lua`),
//! delivered as a Redis 7 Function: loaded once per run with FUNCTION LOAD REPLACE and called with
//! FCALL. A FUNCTION FLUSH in the middle of a run is met by loading the library again.

use crate::target::Conn;

use super::lua::{ScriptReply, UPDATE_SEGMENT_SOURCE, invariant_arg, script_reply, unanswered};
use super::{Context, Facts, Kind, Op, Storage, UpdateError, UpdateStatus};
use crate::error::Error;
use crate::event::Probe;
use crate::event::WriteScope;
use crate::redis_errors::describe;
use crate::schedule::{Role, Step};
use crate::target::Target;

/// Versioned, so a later racelab with a changed function never calls an older one by mistake.
const LIBRARY: &str = "racelab_v2";
const FUNCTION: &str = "racelab_v2_update_segment";

/// How often the library is loaded again when it keeps vanishing (FUNCTION FLUSH).
const LIBRARY_RELOADS: u32 = 5;

/// The library: the shared update source wrapped as a function of `(KEYS, ARGV)`.
fn library() -> String {
    format!(
        "#!lua name={LIBRARY}\n\
         local function update_segment(KEYS, ARGV)\n{UPDATE_SEGMENT_SOURCE}\nend\n\
         redis.register_function('{FUNCTION}', update_segment)\n"
    )
}

async fn load_library(conn: &mut Conn) -> redis::RedisResult<()> {
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(library())
        .query_async(conn)
        .await?;
    Ok(())
}

/// Loads the library for a run; a Redis older than 7 has no functions, and says so clearly.
pub async fn load(target: &Target, conn: &mut Conn) -> Result<(), Error> {
    if target.major_version().is_some_and(|major| major < 7) {
        return Err(Error::Unsupported {
            strategy: "function".to_owned(),
            reason: format!(
                "Redis Functions need Redis 7 or newer and this server is {}; use the lua strategy instead",
                target.version()
            ),
        });
    }
    // Loading is idempotent (REPLACE), so a connection dropped under it is simply tried again.
    let mut attempt = 1;
    loop {
        match load_library(conn).await {
            Err(e)
                if attempt < LIBRARY_RELOADS && (e.is_io_error() || e.is_connection_dropped()) =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            result => {
                return result.map_err(|e| Error::Unsupported {
                    strategy: "function".to_owned(),
                    reason: format!("FUNCTION LOAD failed: {}", describe(&e)),
                });
            }
        }
    }
}

pub struct Function {
    conn: Conn,
}

impl Kind for Function {
    const FACTS: Facts = Facts {
        name: "function",
        how: "the read-modify-write as a Redis 7 Function (FCALL)",
        steps: &["update (FCALL)"],
        storage: Storage::Document,
        scope: WriteScope::Journey,
        cjson: true,
        loses: super::never_loses,
        looks_right: None,
        wrong: None,
        shown_by: None,
        expires: false,
    };

    /// Loads the library on the server (every primary of a cluster) before the run.
    async fn prepare(
        target: &Target,
        conn: &mut Conn,
        _keys: &crate::keys::Keys,
    ) -> Result<(), Error> {
        load(target, conn).await
    }

    async fn new(cx: &Context<'_>) -> Result<Function, Error> {
        Ok(Function {
            conn: cx.shared.clone(),
        })
    }

    async fn update(
        &mut self,
        op: &Op<'_>,
        probe: &mut Probe,
    ) -> Result<UpdateStatus, UpdateError> {
        super::think(op).await?;
        probe
            .writing(|| Step::new(Role::Write, format!("FCALL {FUNCTION} (journey)")))
            .await;
        let mut reloads = 0;
        let mut reruns = 0;
        loop {
            match self.fcall(op, probe.updater).await {
                Ok(reply) => return Ok(script_reply(reply, probe)),
                // Flushed since the run loaded it: nothing ran, so load it again and call again.
                Err(e) if is_missing_function(&e) && reloads < LIBRARY_RELOADS => {
                    reloads += 1;
                    load_library(&mut self.conn)
                        .await
                        .map_err(UpdateError::before_write)?;
                }
                Err(e) => {
                    if let Some(status) =
                        unanswered(&mut self.conn, op, probe, &e, &mut reruns).await
                    {
                        return status;
                    }
                }
            }
        }
    }
}

impl Function {
    async fn fcall(&mut self, op: &Op<'_>, updater: u32) -> redis::RedisResult<ScriptReply> {
        let (worker, token) = super::admission_args(op);
        let mut fcall = redis::cmd("FCALL");
        fcall
            .arg(FUNCTION)
            .arg(3)
            .arg(op.keys.journey())
            .arg(op.keys.applied())
            .arg(op.keys.admission())
            .arg(op.segment_id)
            .arg(op.status)
            .arg(invariant_arg(op))
            .arg(op.write)
            .arg(updater)
            .arg(worker)
            .arg(token);
        fcall.query_async(&mut self.conn).await
    }
}

fn is_missing_function(e: &redis::RedisError) -> bool {
    e.detail()
        .or(Some(&e.to_string()))
        .is_some_and(|d| d.contains("Function not found"))
}
