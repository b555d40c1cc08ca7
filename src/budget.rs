//! How much memory a run will take, and whether this machine has it. A run is refused, with a
//! sentence, before it starts rather than killed halfway (or, in the TUI, left to starve the
//! screen): CI runners have a few GB.

use crate::strategy::Strategy;
use crate::workload::Workload;

/// What an updater costs however it works: its task, its boxed update and state, its request
/// in flight (README "Performance": about 4 KiB, measured with `/usr/bin/time -v`).
const PER_UPDATER: u64 = 4 * 1024;

/// What one segment of a journey copy costs while an updater holds it, parsed, through its think
/// time (the copy *is* the seed's bug): about 700 bytes measured at 1,000 × 1,000.
const PER_SEGMENT_COPY: u64 = 700;

/// The share of the machine's memory a run may plan to use.
const SHARE_OF_MACHINE: f64 = 0.5;

/// About how many bytes `strategy` needs for `workload`.
pub fn estimate(strategy: Strategy, workload: &Workload) -> u64 {
    let segments_held = match strategy {
        // Read-modify-write of the whole document in racelab: each updater holds a copy.
        Strategy::Naive
        | Strategy::Watch
        | Strategy::Lock
        | Strategy::Fenced
        | Strategy::Cas
        | Strategy::Multi
        | Strategy::WatchOther
        | Strategy::DelUnlock
        | Strategy::LocalMutex => u64::from(workload.segments()),
        // Its own segment's key only.
        Strategy::Keys => 1,
        // Nothing read back into racelab (the scripts' copies live inside Redis).
        Strategy::Hash | Strategy::Lua | Strategy::Function => 0,
        // The service's copies live in its own process; a user's script's inside Redis.
        Strategy::User(_) => 0,
    };
    u64::from(workload.updaters)
        .saturating_mul(PER_UPDATER.saturating_add(segments_held.saturating_mul(PER_SEGMENT_COPY)))
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
        let big = workload(5000, 5000);
        assert!(estimate(Strategy::Naive, &big) > 15 * GIB);
        let err = check(Strategy::Naive, &big, Some(12 * GIB)).unwrap_err();
        assert!(
            err.contains("naive with 5000 updaters on 5000 segments"),
            "{err}"
        );
        assert!(err.contains("GiB"), "{err}");
        // hash holds no copy: the same workload fits.
        assert!(check(Strategy::Hash, &big, Some(12 * GIB)).is_ok());
        // The seed scenario fits anywhere.
        assert!(check(Strategy::Naive, &workload(20, 20), Some(64 << 20)).is_ok());
        assert!(check(Strategy::Naive, &big, None).is_ok());
    }
}
