//! Why a run could not be made. Every variant reads as one sentence that says what is wrong and
//! what to do; the binary prints it and exits 2 (or 130 when interrupted).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error(
        "cannot use journey {path}: {reason}; fix it, or pass a journey in the seed's JSON format"
    )]
    Journey { path: String, reason: String },

    #[error(
        "redis-server was not found ({binary}); install it (`apt install redis-server` or `brew install redis`), set RACELAB_REDIS_SERVER to its path, or point racelab at a running Redis with --redis-url"
    )]
    RedisServerMissing { binary: String },

    #[error("the private redis-server did not start: {0}")]
    RedisServerStart(String),

    #[error(
        "redis-cli was not found ({binary}), and a private cluster is formed with `redis-cli --cluster create`; install it (`apt install redis-tools`), set RACELAB_REDIS_CLI to its path, or name a running cluster with --cluster redis://host:port,..."
    )]
    RedisCliMissing { binary: String },

    #[error("the private Redis Cluster did not form: {0}")]
    ClusterStart(String),

    #[error(
        "cannot connect to Redis at {target}: {reason}; check that it runs and that --redis-url is right"
    )]
    Connect { target: String, reason: String },

    #[error(
        "cannot connect to the Redis Cluster at {target}: {reason}; check that its nodes run and that --cluster names them"
    )]
    ClusterConnect { target: String, reason: String },

    #[error("Redis at {target} refused racelab: {reason}")]
    Refused { target: String, reason: String },

    /// Redis answered, with an error that says what to change (WRONGTYPE, READONLY, MOVED,
    /// maxclients): not a connection problem, so not told as one.
    #[error("Redis at {target} answered {reason}")]
    Answer { target: String, reason: String },

    #[error("strategy {strategy} cannot run on this Redis: {reason}")]
    Unsupported { strategy: String, reason: String },

    #[error("the run against {target} failed: {reason}")]
    Run { target: String, reason: String },

    #[error("cannot write the report to {path}: {reason}; choose a writable --output path")]
    Output { path: String, reason: String },

    #[error("cannot write the history to {path}: {reason}; choose a writable --history path")]
    History { path: String, reason: String },

    #[error("cannot write the HTML timeline to {path}: {reason}; choose a writable --html path")]
    Html { path: String, reason: String },

    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// The process exit code that goes with this error (README "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted => 130,
            _ => 2,
        }
    }
}
