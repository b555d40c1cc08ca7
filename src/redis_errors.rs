//! One policy for what Redis answers (STYLE: "one policy for Redis errors, in one module"): which
//! errors are a connection that may come back (transient), which mean Redis did not answer at all
//! (unreachable), which no retry can mend (fatal, refused), how each reads as one line, and what a
//! user should change for the ones that are not a connection problem. The engine, the strategies,
//! the crew and the target all ask here instead of deciding for themselves.

/// A failure of the connection, not a refusal by Redis: worth one more try.
pub fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
}

/// Redis refused on principle (permissions, wrong key type, credentials): reading again will not help.
pub fn is_refusal(e: &redis::RedisError) -> bool {
    matches!(
        e.code(),
        Some("NOPERM" | "WRONGTYPE" | "NOAUTH" | "WRONGPASS")
    )
}

/// Redis did not answer at all.
pub fn is_unreachable(e: &redis::RedisError) -> bool {
    e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// Errors no retry can mend: permissions, wrong key types, unknown commands.
pub fn is_fatal(e: &redis::RedisError) -> bool {
    matches!(
        e.code(),
        Some("NOPERM" | "WRONGTYPE" | "NOAUTH" | "WRONGPASS" | "NOSCRIPT_UNSUPPORTED")
    ) || e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.detail().is_some_and(|d| d.contains("unknown command"))
}

/// What to do about a Redis error that is not a connection problem, in the one place that knows
/// them all (README "Safety"): each gets its cause and what to change.
pub fn advice(e: &redis::RedisError, cluster: bool) -> Option<String> {
    let text = describe(e);
    match e.code() {
        Some("WRONGTYPE") => Some(
            "a key under racelab's prefix holds another type than racelab keeps there, so it is not racelab's, and racelab never changes a key it did not create; choose another --key-prefix".to_owned(),
        ),
        Some("READONLY") => Some(
            "this server is a read-only replica; point --redis-url at its primary".to_owned(),
        ),
        Some("MOVED" | "ASK" | "CLUSTERDOWN") if !cluster => Some(
            "this server is a node of a Redis Cluster; name the cluster with --cluster redis://host:port instead of --redis-url".to_owned(),
        ),
        Some("OOM") => Some(
            "Redis is out of memory (maxmemory, with a policy that evicts nothing); free some, raise maxmemory, or use a smaller journey".to_owned(),
        ),
        Some("LOADING") => Some("Redis is still loading its data; try again in a moment".to_owned()),
        Some("MASTERDOWN") => Some(
            "this replica has lost its primary; point --redis-url at a working primary".to_owned(),
        ),
        _ if text.contains("max number of clients reached") => Some(
            "the server's maxclients is reached; raise it (CONFIG SET maxclients, or maxclients in redis.conf) or run fewer updaters: `watch` opens a connection of its own per updater".to_owned(),
        ),
        _ if text.contains("os error 24") || text.contains("Too many open files") => Some(
            "racelab ran out of file descriptors; raise the limit (`ulimit -n`) or run fewer updaters: `watch` opens a connection of its own per updater".to_owned(),
        ),
        _ => None,
    }
}

/// A Redis error as one line, without the crate's `Debug` decoration.
pub fn describe(e: &redis::RedisError) -> String {
    // A Redis error reply as Redis says it (`NOPERM this user has no permissions …`), not as the
    // crate names its kind (`NoPerm: …`).
    // A pipeline's errors are told once, by the first (they are nearly always one cause).
    if let Some(errors) = e.clone().into_server_errors()
        && let Some((_, first)) = errors.first()
    {
        let detail = first.details().unwrap_or_default();
        return format!("{} {}", first.code(), detail.trim().trim_end_matches('.'))
            .trim()
            .to_owned();
    }
    let text = e.to_string();
    let text = text.trim().trim_end_matches('.').to_owned();
    if text.is_empty() {
        format!("{:?}", e.kind())
    } else {
        text
    }
}
