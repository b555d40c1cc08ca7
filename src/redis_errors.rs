//! One policy for what Redis answers (STYLE: "one policy for Redis errors, in one module"): which
//! errors are a connection that may come back (transient), which mean Redis did not answer at all
//! (unreachable), which no retry can mend (fatal, refused), how each reads as one line, and what a
//! user should change for the ones that are not a connection problem. The engine, the strategies,
//! the crew and the target all ask here instead of deciding for themselves.

/// The error code Redis answered (`OOM`, `NOPERM`, …), also for a pipeline, whose errors the
/// crate keeps per command: the first one's.
pub fn code(e: &redis::RedisError) -> Option<String> {
    if let Some(code) = e.code() {
        return Some(code.to_owned());
    }
    let errors = e.clone().into_server_errors()?;
    errors.first().map(|(_, first)| first.code().to_owned())
}

/// A failure of the connection, not a refusal by Redis: worth one more try.
pub fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
}

/// Redis refused on principle (permissions, wrong key type, credentials): reading again will not help.
pub fn is_refusal(e: &redis::RedisError) -> bool {
    matches!(
        code(e).as_deref(),
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
        code(e).as_deref(),
        Some("NOPERM" | "WRONGTYPE" | "NOAUTH" | "WRONGPASS" | "NOSCRIPT_UNSUPPORTED")
    ) || e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.detail().is_some_and(|d| d.contains("unknown command"))
}

/// What to do about a Redis error that is not a connection problem, in the one place that knows
/// them all (README "Safety"): each gets its cause and what to change.
pub fn advice(e: &redis::RedisError, cluster: bool) -> Option<String> {
    let text = describe(e);
    match code(e).as_deref() {
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
        _ if text.contains("DB index is out of range") => Some(
            "the server has fewer databases than the /db number in --redis-url asks for; choose one below its `databases` setting".to_owned(),
        ),
        _ if cluster && text.contains("cluster support disabled") => Some(
            "this server is not a node of a Redis Cluster; name it with --redis-url instead of --cluster".to_owned(),
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

/// A Redis error as one line, in words: a Redis error reply as Redis says it (`NOPERM this user
/// has no permissions …`), anything else without the crate's Rust names for its kinds
/// (`- InvalidClientConfig`, `Server(ResponseError)`), which tell a user nothing.
pub fn describe(e: &redis::RedisError) -> String {
    // A pipeline's errors are told once, by the first (they are nearly always one cause).
    if let Some(errors) = e.clone().into_server_errors()
        && let Some((_, first)) = errors.first()
    {
        let detail = first.details().unwrap_or_default();
        return format!("{} {}", first.code(), detail.trim().trim_end_matches('.'))
            .trim()
            .to_owned();
    }
    let words = without_rust_names(&e.to_string());
    if words.is_empty() {
        e.category().to_owned()
    } else {
        words
    }
}

/// `text` without the kind names redis-rs writes into its messages.
fn without_rust_names(text: &str) -> String {
    let camel = |word: &str| {
        let mut chars = word.chars();
        chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && word.chars().all(|c| c.is_ascii_alphanumeric())
            && word.chars().any(|c| c.is_ascii_lowercase())
    };
    // `InvalidClientConfig`, `Server(ResponseError)`: a capitalised name, or one wrapping
    // another in parentheses; plain capitalised words (`Password`) have no second capital.
    let is_name = |word: &str| match word.split_once('(') {
        Some((outer, inner)) => camel(outer) && camel(inner.trim_end_matches(')')),
        None => camel(word) && word.chars().skip(1).any(|c| c.is_ascii_uppercase()),
    };
    let mut kept: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let bare = word.trim_end_matches(':');
        if word == "-" {
            continue;
        }
        if is_name(bare) {
            // `… database - Server(ResponseError): DB index …` keeps its colon.
            if word.ends_with(':')
                && let Some(last) = kept.last_mut()
            {
                last.push(':');
            }
            continue;
        }
        kept.push(word.to_owned());
    }
    kept.join(" ").trim_end_matches(['.', ':']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::without_rust_names;

    #[test]
    fn the_crates_kind_names_are_not_shown() {
        assert_eq!(
            without_rust_names("Redis URL did not parse - InvalidClientConfig"),
            "Redis URL did not parse"
        );
        assert_eq!(
            without_rust_names("Password authentication failed - AuthenticationFailed"),
            "Password authentication failed"
        );
        assert_eq!(
            without_rust_names(
                "Redis server refused to switch database - Server(ResponseError): DB index is out of range"
            ),
            "Redis server refused to switch database: DB index is out of range"
        );
        assert_eq!(
            without_rust_names("Connection refused (os error 111)"),
            "Connection refused (os error 111)"
        );
        assert_eq!(without_rust_names("NOPERM the user"), "NOPERM the user");
    }
}
