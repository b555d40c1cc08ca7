//! The key layout. Every key racelab touches is built here, so the promise "never outside the
//! prefix" is kept in one place.
//!
//! `<prefix>:<run id>:{<journey id>}:<part>`: the run id keeps concurrent runs on one Redis apart,
//! and the hash tag `{<journey id>}` keeps a journey's keys on one Redis Cluster slot so scripts,
//! WATCH and MULTI can span them.

use rand::Rng;

/// Every key of a run expires this long after its last renewal: a safety net for a racelab that
/// was killed (SIGKILL runs no cleanup). The engine renews it every quarter of it while the run
/// goes on, every write keeps it, and the keys are deleted at the end (or made permanent with
/// `--keep`), so it only ever fires on keys nobody is left to delete.
pub const SAFETY_TTL: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Keys {
    base: String,
}

impl Keys {
    pub fn new(prefix: &str, run_id: &str, journey_id: &str) -> Keys {
        Keys {
            base: format!("{}{{{journey_id}}}", Keys::run_prefix(prefix, run_id)),
        }
    }

    /// Everything a run may write starts with this: `<prefix>:<run id>:`. A user's journey
    /// service (`exec:`) gets it as `RACELAB_KEY_PREFIX`, and what is under it goes with the run.
    pub fn run_prefix(prefix: &str, run_id: &str) -> String {
        format!("{prefix}:{run_id}:")
    }

    /// A fresh run id: short, random, safe inside a key.
    pub fn new_run_id() -> String {
        format!("{:08x}", rand::rng().random::<u32>())
    }

    /// The journey as one JSON document (the seed's layout).
    pub fn journey(&self) -> String {
        format!("{}:journey", self.base)
    }

    /// The journey's segment states as hash fields.
    pub fn segments_hash(&self) -> String {
        format!("{}:segments", self.base)
    }

    /// One segment's own key.
    pub fn segment(&self, segment_id: &str) -> String {
        format!("{}:segment:{segment_id}", self.base)
    }

    /// The journey's version stamp (optimistic strategies).
    pub fn version(&self) -> String {
        format!("{}:version", self.base)
    }

    /// The journey's lock.
    pub fn lock(&self) -> String {
        format!("{}:lock", self.base)
    }

    /// The fencing-token counter of the journey's lock.
    pub fn fence(&self) -> String {
        format!("{}:fence", self.base)
    }

    /// Each updater's last applied write id (`lua`, `function`, `cas` record it in the write's
    /// own script), so that a write whose reply never came can be resolved (README "Safety").
    pub fn applied(&self) -> String {
        format!("{}:applied", self.base)
    }

    /// Which workers may still write into the run, each with its token (`--workers`): a worker
    /// the coordinator took for gone is struck off, and its late writes are refused (README
    /// "Workers").
    pub fn admission(&self) -> String {
        format!("{}:admission", self.base)
    }

    /// The stream a crew's workers send the run's events through (`--workers`).
    pub fn events(&self) -> String {
        format!("{}:events", self.base)
    }

    /// Every key a run on a journey with these segments can create, for cleanup.
    pub fn all<'a>(&self, segment_ids: impl Iterator<Item = &'a str>) -> Vec<String> {
        let mut keys = vec![
            self.journey(),
            self.segments_hash(),
            self.version(),
            self.lock(),
            self.fence(),
            self.applied(),
            self.admission(),
            self.events(),
        ];
        keys.extend(segment_ids.map(|id| self.segment(id)));
        keys
    }
}

/// The keys a crew of workers meets under (`racelab worker`, `--workers`): all under
/// `<prefix>:crew:{crew}:`, each living only while its owner renews it. The hash tag keeps them
/// on one Redis Cluster slot, so the pipelines that renew or look at several of them work there.
#[derive(Debug, Clone)]
pub struct CrewKeys {
    base: String,
}

impl CrewKeys {
    pub fn new(prefix: &str) -> CrewKeys {
        CrewKeys {
            base: format!("{prefix}:crew:{{crew}}"),
        }
    }

    /// The list of workers waiting to be claimed by a run.
    pub fn lobby(&self) -> String {
        format!("{}:lobby", self.base)
    }

    /// A worker's card (host, pid, the session that claimed it); it expires when the worker
    /// stops renewing it, which is how a vanished worker is noticed.
    pub fn worker(&self, worker_id: &str) -> String {
        format!("{}:worker:{worker_id}", self.base)
    }

    /// A coordinator's session: present while the coordinator lives.
    pub fn session(&self, session_id: &str) -> String {
        format!("{}:session:{session_id}", self.base)
    }

    /// The stream a coordinator sends its workers jobs, the release and stops through.
    pub fn control(&self, session_id: &str) -> String {
        format!("{}:session:{session_id}:control", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_prefix_run_and_hash_tag() {
        let keys = Keys::new("racelab", "0a1b2c3d", "JRN-TEST-001");
        assert_eq!(keys.journey(), "racelab:0a1b2c3d:{JRN-TEST-001}:journey");
        assert_eq!(
            keys.segment("SEG-002"),
            "racelab:0a1b2c3d:{JRN-TEST-001}:segment:SEG-002"
        );
        let all = keys.all(["SEG-001"].into_iter());
        let crew = CrewKeys::new("racelab");
        assert_eq!(crew.lobby(), "racelab:crew:{crew}:lobby");
        assert_eq!(crew.control("s1"), "racelab:crew:{crew}:session:s1:control");
        assert!(
            all.iter()
                .all(|k| k.starts_with("racelab:0a1b2c3d:{JRN-TEST-001}:"))
        );
    }
}
