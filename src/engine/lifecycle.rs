//! A run's keys from birth to deletion: seeded (after making sure none exists) with their
//! safety-net expiry, renewed while the run goes on, read back at the end (and checked for a
//! journey that vanished and was written back), and deleted, with what Redis said when it
//! would not.

use std::time::Duration;

use crate::error::Error;
use crate::journey::{Journey, SegmentState};
use crate::keys::Keys;
use crate::redis_errors::{is_refusal, is_transient};
use crate::strategy::Strategy;
use crate::strategy::storage::StorageError;
use crate::target::{Conn, Target};

/// Whether the journey vanished during the run and an updater wrote it back: a stale copy that
/// any verdict would wrongly judge. racelab seeds every key with its safety-net expiry and every
/// write keeps it, so a journey key without one was made again by a write after it was gone
/// (a FLUSHDB or a DEL, then a naive SET of a copy read before).
pub(super) async fn written_back(
    strategy: Strategy,
    conn: &mut Conn,
    keys: &Keys,
) -> Option<String> {
    let mut checked = vec![keys.journey()];
    if strategy.storage() == crate::strategy::Storage::Hash {
        checked.push(keys.segments_hash());
    }
    for key in checked {
        let ttl: redis::RedisResult<i64> = redis::cmd("PTTL").arg(&key).query_async(conn).await;
        if ttl == Ok(-1) {
            return Some(format!(
                "the journey at {key} vanished during the run and an updater wrote its old copy back"
            ));
        }
    }
    None
}

/// Renews the safety-net expiry of the run's keys every quarter of [`SAFETY_TTL`] while the run
/// goes on, so a run of any length keeps its keys and a killed racelab's keys still go. Never
/// ends; failures are left to the next renewal (a missing key is not created by PEXPIRE).
pub(super) async fn renew_expiry(
    mut conn: Conn,
    keys: &Keys,
    journey: &Journey,
    only_if_set: bool,
    expiry: Duration,
) -> std::convert::Infallible {
    let ttl = expiry.as_millis() as i64;
    // Most runs end long before the first renewal: the key list is only made for those that don't.
    tokio::time::sleep(expiry / 4).await;
    // Not the lock: its own short ttl is the lesson of `lock`. Not the events stream: the crew
    // keeps its expiry.
    let (lock, events) = (keys.lock(), keys.events());
    let all: Vec<String> = keys
        .all(journey.segments.iter().map(|s| s.segment_id.as_str()))
        .into_iter()
        .filter(|key| *key != lock && *key != events)
        .collect();
    loop {
        for chunk in all.chunks(1000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                // XX (Redis 7): a key written back without its expiry after it vanished must
                // stay without one, so the end of the run can tell (see `written_back`).
                let renew = pipe.cmd("PEXPIRE").arg(key).arg(ttl);
                if only_if_set {
                    renew.arg("XX");
                }
                renew.ignore();
            }
            let _: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        }
        tokio::time::sleep(expiry / 4).await;
    }
}

/// Writes the journey under the run's keys, after making sure none of them exists: racelab only
/// ever writes keys it created.
pub(super) async fn seed(
    target: &Target,
    strategy: Strategy,
    conn: &mut Conn,
    keys: &Keys,
    journey: &Journey,
) -> Result<(), Error> {
    let fail = |reason: String| Error::Run {
        target: target.display().to_owned(),
        reason,
    };
    let all = keys.all(journey.segments.iter().map(|s| s.segment_id.as_str()));
    for chunk in all.chunks(1000) {
        let mut attempt = 1;
        let existing: u64 = loop {
            match redis::cmd("EXISTS").arg(chunk).query_async(conn).await {
                Err(e) if attempt < SETUP_ATTEMPTS && is_transient(&e) => attempt += 1,
                other => break other.map_err(|e| target.refused(&e))?,
            }
            tokio::time::sleep(SETUP_RETRY_PAUSE).await;
        };
        if existing > 0 {
            return Err(fail(format!(
                "keys under {} already exist, and racelab writes only keys it creates; run again (a new run id is drawn) or choose another --key-prefix",
                keys.journey()
            )));
        }
    }
    // Seeding writes the same values however often it runs, so a dropped connection is simply
    // tried again.
    let mut attempt = 1;
    loop {
        match strategy.storage().seed(conn, keys, journey).await {
            Err(e) if attempt < SETUP_ATTEMPTS && is_transient(&e) => attempt += 1,
            Ok(()) => return Ok(()),
            Err(e) => {
                let advised = crate::redis_errors::advice(&e, target.is_cluster()).is_some();
                let error = match crate::redis_errors::code(&e).as_deref() {
                    Some("NOPERM" | "NOAUTH" | "WRONGPASS") => target.refused(&e),
                    _ if advised => target.refused(&e),
                    _ => fail(format!(
                        "seeding the journey under {} failed: {}",
                        keys.journey(),
                        crate::redis_errors::describe(&e)
                    )),
                };
                // Part of the seed may have landed (a pipeline refused halfway): those keys are
                // the run's, so they go now; the run never started.
                if let Err(why) = cleanup(conn, keys, journey).await
                    && any_left(conn, keys, journey).await
                {
                    crate::note!(
                        "racelab: warning: the keys of the run that could not start are left under {}: {why}",
                        keys.journey()
                    );
                }
                return Err(error);
            }
        }
        tokio::time::sleep(SETUP_RETRY_PAUSE).await;
    }
}

/// Whether any of the run's keys exist (`true` when Redis cannot say).
async fn any_left(conn: &mut Conn, keys: &Keys, journey: &Journey) -> bool {
    let all = keys.all(journey.segments.iter().map(|s| s.segment_id.as_str()));
    for chunk in all.chunks(1000) {
        let existing: redis::RedisResult<u64> =
            redis::cmd("EXISTS").arg(chunk).query_async(conn).await;
        if existing != Ok(0) {
            return true;
        }
    }
    false
}

/// Attempts at each setup command when the connection drops under it.
const SETUP_ATTEMPTS: u32 = 3;

const SETUP_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The final state, read again a few times if the shared connection is reconnecting.
pub(super) async fn read_final(
    strategy: Strategy,
    conn: &mut Conn,
    keys: &Keys,
) -> Result<Option<Vec<SegmentState>>, StorageError> {
    let mut attempt = 1;
    loop {
        match strategy.storage().read_states(conn, keys).await {
            Err(StorageError::Redis(e)) if attempt < FINAL_READ_ATTEMPTS && !is_refusal(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Deletes every key the run may have created. Best effort: a failure here must not hide the
/// run's verdict, and the keys are all under the run's own prefix and id.
/// Says why, when not every key is gone: what Redis answered (NOPERM, READONLY), or that it did
/// not answer; a connection that dropped is tried a few times more.
pub(super) async fn cleanup(conn: &mut Conn, keys: &Keys, journey: &Journey) -> Result<(), String> {
    let all = keys.all(journey.segments.iter().map(|s| s.segment_id.as_str()));
    for chunk in all.chunks(1000) {
        let mut attempt = 1;
        loop {
            match redis::cmd("DEL").arg(chunk).query_async::<i64>(conn).await {
                Ok(_) => break,
                Err(e) if attempt < SETUP_ATTEMPTS && is_transient(&e) => attempt += 1,
                Err(e) if is_transient(&e) => {
                    return Err(format!(
                        "Redis did not answer their deletion ({})",
                        crate::redis_errors::describe(&e)
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "Redis refused to delete them: {}",
                        crate::redis_errors::describe(&e)
                    ));
                }
            }
            tokio::time::sleep(SETUP_RETRY_PAUSE).await;
        }
    }
    Ok(())
}

/// Attempts at reading the final state back, for a connection that is reconnecting.
const FINAL_READ_ATTEMPTS: u32 = 3;

/// Keys deleted per SCAN page.
const SCAN_COUNT: usize = 1000;

/// Deletes every key matching `pattern` (SCAN, never KEYS).
pub(super) async fn delete_matching(conn: &mut Conn, pattern: &str) -> Result<(), String> {
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await
            .map_err(|e| crate::redis_errors::describe(&e))?;
        if !found.is_empty() {
            redis::cmd("DEL")
                .arg(&found)
                .query_async::<i64>(conn)
                .await
                .map_err(|e| {
                    format!(
                        "Redis refused to delete them: {}",
                        crate::redis_errors::describe(&e)
                    )
                })?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::RedisServer;

    /// Renewal keeps a long run's keys alive past their first expiry, and leaves a key written
    /// back without one as it is (so `written_back` can tell).
    #[tokio::test]
    async fn renewal_keeps_a_long_runs_keys_and_no_more() {
        let Ok(server) = RedisServer::start() else {
            panic!("redis-server must be installed for the tests");
        };
        let target = Target::open(Some(&server.url()), Duration::from_secs(5))
            .await
            .unwrap();
        let mut conn = target.connection().await.unwrap();
        let journey = Journey::seed_fixture().unwrap().with_segments(2);
        let keys = Keys::new("racelab-test", "0a1b2c3d", &journey.id);
        let expiry = Duration::from_millis(400);
        let () = redis::pipe()
            .cmd("SET")
            .arg(keys.journey())
            .arg("{}")
            .arg("PX")
            .arg(400)
            .ignore()
            .cmd("SET")
            .arg(keys.version())
            .arg(0)
            .ignore()
            .query_async(&mut conn)
            .await
            .unwrap();
        let renew = renew_expiry(conn.clone(), &keys, &journey, true, expiry);
        // Three expiries long: without renewal the journey would be gone twice over.
        let _ = tokio::time::timeout(Duration::from_millis(1200), renew).await;
        let ttl: i64 = redis::cmd("PTTL")
            .arg(keys.journey())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "the journey's expiry was not renewed ({ttl})");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(keys.version())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(ttl, -1, "a key without expiry got one");
        assert!(
            written_back(Strategy::Naive, &mut conn, &keys)
                .await
                .is_none()
        );
    }
}
