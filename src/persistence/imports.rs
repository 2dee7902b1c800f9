//! Import jobs on disk: each job's state (JSON, in a tree of its own, keyed
//! by job id) and its row errors (keyed by job id then line), and the files
//! being imported, spooled under `imports/` in the data directory until the
//! job ends. A job's state and the errors of the rows it has read are filed
//! by the WAL writer (`WalOp::File`) after the records of the products those
//! rows made, so a kept state never claims a row whose product is not
//! durable.

use std::path::{Path, PathBuf};

use sled::Tree;

use super::store::{corrupt, Store, StoreError};
use super::wal::WalOp;
use crate::domain::import::{ImportJob, RowError};

const JOBS: &str = "import_jobs";
const ERRORS: &str = "import_errors";
const SPOOL_DIR: &str = "imports";

fn error_key(job: u128, line: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&job.to_be_bytes());
    key[16..].copy_from_slice(&line.to_be_bytes());
    key
}

#[derive(Clone)]
pub struct ImportJobs {
    jobs: Tree,
    errors: Tree,
    spool: PathBuf,
}

impl ImportJobs {
    pub fn open(store: &Store, data_dir: &Path) -> Result<Self, StoreError> {
        let spool = data_dir.join(SPOOL_DIR);
        std::fs::create_dir_all(&spool)
            .map_err(|e| corrupt("import spool directory", e.to_string()))?;
        Ok(Self {
            jobs: store.tree(JOBS)?,
            errors: store.tree(ERRORS)?,
            spool,
        })
    }

    /// Where job `id`'s file is spooled.
    pub fn file_of(&self, id: u128) -> PathBuf {
        self.spool.join(format!("{id:032x}.upload"))
    }

    /// Removes spooled files of no job in `keep` (uploads cut off by a
    /// crash before their job was kept); answers how many went. Other files
    /// in the directory are left alone.
    pub fn remove_orphans(
        &self,
        keep: &std::collections::HashSet<u128>,
    ) -> Result<usize, StoreError> {
        let listing = std::fs::read_dir(&self.spool)
            .map_err(|e| corrupt("import spool directory", e.to_string()))?;
        let mut removed = 0;
        for entry in listing {
            let entry = entry.map_err(|e| corrupt("import spool directory", e.to_string()))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".upload"))
                .filter(|hex| hex.len() == 32)
                .and_then(|hex| u128::from_str_radix(hex, 16).ok())
            else {
                continue;
            };
            if !keep.contains(&id) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| corrupt("import spool file", e.to_string()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Files `job` and `errors` (each kept only while fewer than
    /// `errors_kept` are), in the commit of what was sent before.
    pub fn filing(
        &self,
        job: &ImportJob,
        errors: Vec<RowError>,
        errors_kept: u64,
    ) -> Result<WalOp, StoreError> {
        let value = serde_json::to_vec(job).map_err(|e| corrupt("import job", e.to_string()))?;
        let mut entries = Vec::new();
        let first_index = job.errors.saturating_sub(errors.len() as u64);
        for (i, error) in errors.iter().enumerate() {
            if first_index + i as u64 >= errors_kept {
                break;
            }
            let bytes =
                serde_json::to_vec(error).map_err(|e| corrupt("import error", e.to_string()))?;
            entries.push((error_key(job.id, error.line), bytes));
        }
        let (jobs, errors_tree, id) = (self.jobs.clone(), self.errors.clone(), job.id);
        Ok(WalOp::File(Box::new(move || {
            for (key, bytes) in entries {
                errors_tree.insert(key, bytes)?;
            }
            jobs.insert(id.to_be_bytes(), value)?;
            Ok(())
        })))
    }

    pub fn get(&self, id: u128) -> Result<Option<ImportJob>, StoreError> {
        self.jobs
            .get(id.to_be_bytes())?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| corrupt("import job", e.to_string()))
            })
            .transpose()
    }

    /// Jobs that have not finished (to resume after a restart), oldest first.
    pub fn unfinished(&self) -> Result<Vec<ImportJob>, StoreError> {
        let mut jobs = Vec::new();
        for entry in self.jobs.iter() {
            let (_, bytes) = entry?;
            let job: ImportJob =
                serde_json::from_slice(&bytes).map_err(|e| corrupt("import job", e.to_string()))?;
            if !job.state.is_finished() {
                jobs.push(job);
            }
        }
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    /// Forgets finished jobs that finished at or before `cutoff_ms`, with
    /// their row errors, at most `max` of them, oldest first; answers how
    /// many went. Jobs are keyed by UUIDv7, so in the order they were made:
    /// the scan stops at the first job made after `cutoff_ms` (none after it
    /// can have finished by then). Unfinished jobs are never forgotten.
    pub fn purge_finished(&self, cutoff_ms: u64, max: usize) -> Result<usize, StoreError> {
        let mut purged = 0;
        for entry in self.jobs.iter() {
            if purged >= max {
                break;
            }
            let (key, bytes) = entry?;
            let job: ImportJob =
                serde_json::from_slice(&bytes).map_err(|e| corrupt("import job", e.to_string()))?;
            if job.created_at_ms > cutoff_ms {
                break;
            }
            let ended = job.finished_at_ms.filter(|_| job.state.is_finished());
            if ended.is_none_or(|at| at > cutoff_ms) {
                continue;
            }
            let from = error_key(job.id, 0);
            let to = error_key(job.id, u64::MAX);
            let mut batch = sled::Batch::default();
            for error in self.errors.range(from..=to) {
                batch.remove(error?.0);
            }
            self.errors.apply_batch(batch)?;
            self.jobs.remove(key)?;
            purged += 1;
        }
        Ok(purged)
    }

    /// A job's kept row errors after line `after`, at most `limit`, by line.
    pub fn errors(&self, id: u128, after: u64, limit: usize) -> Result<Vec<RowError>, StoreError> {
        let from = error_key(id, after.saturating_add(1));
        let to = error_key(id, u64::MAX);
        self.errors
            .range(from..=to)
            .take(limit)
            .map(|entry| {
                let (_, bytes) = entry?;
                serde_json::from_slice(&bytes).map_err(|e| corrupt("import error", e.to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs in a fresh store, with the directory that holds it.
    fn opened() -> (tempfile::TempDir, ImportJobs) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            1 << 20,
            super::super::SyncMode::None,
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        let jobs = ImportJobs::open(&store, dir.path()).unwrap();
        (dir, jobs)
    }

    #[test]
    fn only_files_of_no_kept_job_are_removed_at_start_up() {
        let (dir, jobs) = opened();
        for id in [1u128, 2] {
            std::fs::write(jobs.file_of(id), b"title\n").unwrap();
        }
        let foreign = dir.path().join(SPOOL_DIR).join("notes.txt");
        std::fs::write(&foreign, b"kept").unwrap();
        let keep = std::collections::HashSet::from([2u128]);
        assert_eq!(jobs.remove_orphans(&keep).unwrap(), 1);
        assert!(!jobs.file_of(1).exists());
        assert!(jobs.file_of(2).exists(), "an unfinished job keeps its file");
        assert!(
            foreign.exists(),
            "files not named as uploads are left alone"
        );
        assert_eq!(jobs.remove_orphans(&keep).unwrap(), 0);
    }

    fn job(id: u128, created: u64, finished: Option<u64>) -> ImportJob {
        use crate::domain::import::{ImportFormat, JobState, Tally};
        ImportJob {
            id,
            tenant_id: 1,
            tenant: "t".into(),
            by: "user:1".into(),
            format: ImportFormat::Csv,
            state: if finished.is_some() {
                JobState::Completed
            } else {
                JobState::Running
            },
            bytes: 10,
            created_at_ms: created,
            started_at_ms: Some(created),
            finished_at_ms: finished,
            header: Vec::new(),
            offset: 0,
            line: 1,
            rows: Tally::default(),
            products: Tally::default(),
            errors: 0,
            failure: None,
            resumed: 0,
        }
    }

    fn file(jobs: &ImportJobs, job: &ImportJob, lines: &[u64]) {
        let errors = lines
            .iter()
            .map(|line| RowError {
                line: *line,
                field: "price".into(),
                reason: "bad".into(),
            })
            .collect::<Vec<_>>();
        let mut job = job.clone();
        job.errors = errors.len() as u64;
        match jobs.filing(&job, errors, 100).unwrap() {
            WalOp::File(filing) => filing().unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn finished_jobs_past_retention_go_with_their_errors_and_nothing_else_does() {
        let (_dir, jobs) = opened();
        let old_done = job(1, 100, Some(200));
        let old_running = job(2, 150, None);
        let done_late = job(3, 300, Some(2_000));
        let new_done = job(4, 1_500, Some(1_600));
        for (j, lines) in [
            (&old_done, &[3u64, 9][..]),
            (&old_running, &[4][..]),
            (&done_late, &[5][..]),
            (&new_done, &[6][..]),
        ] {
            file(&jobs, j, lines);
        }
        assert_eq!(jobs.purge_finished(1_000, 10).unwrap(), 1);
        assert!(jobs.get(1).unwrap().is_none());
        assert!(
            jobs.errors(1, 0, 10).unwrap().is_empty(),
            "its errors went too"
        );
        for kept in [2, 3, 4] {
            assert!(jobs.get(kept).unwrap().is_some(), "job {kept}");
            assert_eq!(jobs.errors(kept, 0, 10).unwrap().len(), 1);
        }
        assert_eq!(jobs.purge_finished(1_000, 10).unwrap(), 0);
        // Later, the bound of one a call holds.
        assert_eq!(jobs.purge_finished(5_000, 1).unwrap(), 1);
        assert_eq!(jobs.purge_finished(5_000, 10).unwrap(), 1);
        assert!(jobs.get(2).unwrap().is_some(), "an unfinished job stays");
    }
}
