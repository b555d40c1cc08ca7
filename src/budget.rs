//! How much memory a run will take, and whether this machine has it. A run is refused, with a
//! sentence, before it starts rather than killed halfway (or, in the TUI, left to starve the
//! screen): CI runners have a few GB.

use crate::in_flight;
use crate::strategy::Strategy;
use crate::workload::Workload;

/// What an updater costs that waits its turn holding what it read (every read-modify-write
/// updater, from its read until the barrier lets the writes go, README "Performance"): its task
/// (848 bytes of future), its update's state (552 for naive), its place in the line, its
/// acknowledged write in the tally. Measured: 2.2 KiB per naive updater at 100,000, its copy of
/// 20 segments and the requests in flight included.
const PER_WAITING_UPDATER: u64 = 2048;

/// What an updater costs that holds nothing while it waits (`hash`, `lua`, `function`, a user's
/// script): it is started only when its request can go, so until then it is the few bytes made
/// before the release, and afterwards its acknowledged write in the tally (64 bytes, in a `Vec`
/// that doubles as it grows). Measured: about 170 bytes per `hash` updater at 1,000,000.
const PER_IDLE_UPDATER: u64 = 192;

/// A `watch` updater owns a connection and is never held back by the cap: its cost as measured
/// before the cap (about 4 KiB), when every updater held a task and a request.
const PER_CONNECTED_UPDATER: u64 = 4 * 1024;

/// One segment of a held copy of the journey: a status byte and a count (`JourneyCopy`).
const PER_SEGMENT_COPY: u64 = 9;

/// Copies of a document one request in flight makes: the document, its command and its encoding
/// on the way out; the reply on the way in.
const COPIES_IN_FLIGHT: u64 = 4;

/// The share of the machine's memory a run may plan to use.
const SHARE_OF_MACHINE: f64 = 0.5;

/// About how many bytes `strategy`'s updaters need for `workload`, beyond what the process
/// needs anyway (about 15 MiB with 20 updaters).
pub fn estimate(strategy: Strategy, workload: &Workload) -> u64 {
    let segments = u64::from(workload.segments());
    // What each updater holds while it waits, and whether whole documents travel.
    let (per_updater, documents) = match strategy {
        // Read-modify-write of the whole document in racelab: each updater holds a copy.
        Strategy::Naive
        | Strategy::Lock
        | Strategy::Fenced
        | Strategy::Cas
        | Strategy::Multi
        | Strategy::DelUnlock
        | Strategy::LocalMutex => (PER_WAITING_UPDATER + segments * PER_SEGMENT_COPY, true),
        Strategy::Watch | Strategy::WatchOther => {
            (PER_CONNECTED_UPDATER + segments * PER_SEGMENT_COPY, true)
        }
        // Its own segment's key only.
        Strategy::Keys => (PER_WAITING_UPDATER + PER_SEGMENT_COPY, false),
        // Nothing read back into racelab (the scripts' copies live inside Redis).
        Strategy::Hash | Strategy::Lua | Strategy::Function => (PER_IDLE_UPDATER, false),
        // The service's copies live in its own process; a user's script's inside Redis.
        Strategy::User(_) => (PER_IDLE_UPDATER, false),
    };
    let updaters = u64::from(workload.updaters);
    let in_flight = match documents {
        true => {
            let document = workload.journey.to_json().len();
            let requests = in_flight::limit_for(document) as u64;
            requests.min(updaters) * document as u64 * COPIES_IN_FLIGHT
        }
        false => 0,
    };
    updaters
        .saturating_mul(per_updater)
        .saturating_add(in_flight)
}

/// The most a run may plan to use here: half of the machine's memory, or no limit where the
/// machine does not say (not Linux).
pub fn limit() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((kib as f64 * 1024.0 * SHARE_OF_MACHINE) as u64)
}

/// What `strategy` on `workload` would need, and the limit, when it does not fit in `limit`.
pub fn shortfall(
    strategy: Strategy,
    workload: &Workload,
    limit: Option<u64>,
) -> Option<(u64, u64)> {
    let limit = limit?;
    let need = estimate(strategy, workload);
    (need > limit).then_some((need, limit))
}

/// The TUI's footer line for a run that does not fit: short enough for 80 columns.
pub fn short_reason(strategy: Strategy, need: u64, limit: u64) -> String {
    format!(
        "{strategy}: ~{} needed, limit {} (half the memory): use fewer updaters",
        size(need),
        size(limit)
    )
}

/// Why `strategy` on `workload` does not fit in `limit` bytes, if it does not.
pub fn check(strategy: Strategy, workload: &Workload, limit: Option<u64>) -> Result<(), String> {
    let Some((need, limit)) = shortfall(strategy, workload, limit) else {
        return Ok(());
    };
    Err(format!(
        "{} with {} updaters on {} segments would need about {}, more than the {} racelab allows itself (half of this machine's memory){}; run fewer updaters or segments",
        strategy,
        workload.updaters,
        workload.segments(),
        size(need),
        size(limit),
        match strategy {
            Strategy::Hash | Strategy::Lua | Strategy::Function | Strategy::Keys => "",
            _ => ": each updater holds its own copy of the journey while it thinks",
        }
    ))
}

/// Bytes as a person reads them: `2.4 GiB`, `310 MiB`.
fn size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = bytes as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journey::Journey;
    use crate::workload::Tuning;
    use std::sync::Arc;
    use std::time::Duration;

    fn workload(updaters: u32, segments: usize) -> Workload {
        Workload {
            journey: Arc::new(Journey::seed_fixture().unwrap().with_segments(segments)),
            updaters,
            rounds: 1,
            think: Duration::from_millis(10),
            jitter: 0.1,
            seed: 1,
            tuning: Tuning {
                backoff: crate::workload::Backoff::Exp,
                lock_ttl: Duration::from_secs(1),
                max_retries: 10,
            },
            deadline: None,
            schedule: None,
            processes: 1,
            scenario: crate::workload::Scenario::LostUpdate,
        }
    }

    #[test]
    fn copies_of_the_journey_dominate_and_are_refused_past_the_limit() {
        const GIB: u64 = 1 << 30;
        const MIB: u64 = 1 << 20;
        let big = workload(200_000, 5000);
        assert!(estimate(Strategy::Naive, &big) > 8 * GIB);
        let err = check(Strategy::Naive, &big, Some(8 * GIB)).unwrap_err();
        assert!(
            err.contains("naive with 200000 updaters on 5000 segments"),
            "{err}"
        );
        assert!(err.contains("GiB"), "{err}");
        // hash holds no copy: the same workload fits.
        assert!(check(Strategy::Hash, &big, Some(8 * GIB)).is_ok());
        // The seed scenario fits anywhere.
        assert!(check(Strategy::Naive, &workload(20, 20), Some(64 << 20)).is_ok());
        assert!(check(Strategy::Naive, &big, None).is_ok());
        // The rows README "Performance" measures, each within its target (and above what was
        // measured, so the estimate does not promise too little).
        let rows = [
            (Strategy::Hash, workload(100_000, 1000), 31 * MIB, 128 * MIB),
            (Strategy::Naive, workload(100_000, 20), 235 * MIB, 256 * MIB),
            (
                Strategy::Naive,
                workload(10_000, 1000),
                202 * MIB,
                512 * MIB,
            ),
            (Strategy::Hash, workload(1_000_000, 1000), 182 * MIB, GIB),
        ];
        for (strategy, workload, measured, target) in rows {
            // The process without updaters: 15 MiB measured.
            let estimate = (16 * MIB) + estimate(strategy, &workload);
            assert!(
                (measured..target).contains(&estimate),
                "{strategy} × {}: {} MiB",
                workload.updaters,
                estimate / MIB
            );
        }
    }
}
