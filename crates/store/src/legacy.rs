//! Migration 5's data step: state written before runs existed, moved into runs.
//!
//! Before, a job had one event log and one folder of checkpoints; an ensemble numbered its
//! members' epochs on across members (member `m`'s epoch `e` was checkpoint epoch
//! `m * epochs + e`, in the checkpoint's file name and its `meta.epoch`), its events
//! carried `member`, and its best epoch was the last member's last checkpoint epoch. Now
//! member `m` is run `m + 1` with its own epochs, and the ensemble's combined model is the
//! job's own run 0. This step, run once inside migration 5's transaction:
//! - sets each event's run from the `member` its stored record still carries, and the
//!   ensemble event's `best_epoch` to the epoch it now names;
//! - moves checkpoints into `jobs/<job>/runs/<run>/`, rewriting an ensemble member's
//!   `meta.epoch` to its own count, and makes the last member's last checkpoint (which
//!   holds every member's variables) the ensemble's own, run 0's.
//!
//! File moves are idempotent, so a crash before the transaction commits only repeats them.

use std::path::Path;

use rusqlite::{Transaction, params};

use gradstream_domain::{EventKind, JobSpec, RunId};

use super::StoreError;
use crate::checkpoint;
use crate::sqlite::{job_dir, run_dir};

/// What an old event record says about its run.
#[derive(serde::Deserialize)]
enum Probe {
    Iteration(Member),
    Epoch(Member),
    #[serde(other)]
    Other,
}

#[derive(serde::Deserialize)]
struct Member {
    #[serde(default)]
    member: Option<u32>,
    #[serde(default)]
    ensemble: bool,
}

pub(crate) fn into_runs(tx: &Transaction<'_>, state_dir: &Path) -> Result<(), StoreError> {
    let jobs: Vec<(String, Vec<u8>)> = {
        let mut q = tx.prepare("SELECT id, spec FROM jobs")?;
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    for (id, spec) in jobs {
        let spec: JobSpec = rmp_serde::from_slice(&spec)?;
        let epochs = spec.epochs;
        let ensemble = spec.ensemble.map(|e| e.members());
        if ensemble.is_some() {
            events_into_runs(tx, &id, epochs)?;
        }
        checkpoints_into_runs(state_dir, &id, epochs, ensemble)?;
    }
    Ok(())
}

fn events_into_runs(tx: &Transaction<'_>, job: &str, epochs: u32) -> Result<(), StoreError> {
    let events: Vec<(i64, Vec<u8>)> = {
        let mut q = tx.prepare("SELECT seq, kind FROM events WHERE job_id = ?1")?;
        q.query_map(params![job], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    let mut set_run = tx.prepare("UPDATE events SET run = ?3 WHERE job_id = ?1 AND seq = ?2")?;
    let mut set_kind = tx.prepare("UPDATE events SET kind = ?3 WHERE job_id = ?1 AND seq = ?2")?;
    for (seq, blob) in events {
        let Ok(probe) = rmp_serde::from_slice::<Probe>(&blob) else {
            continue;
        };
        match probe {
            Probe::Iteration(Member {
                member: Some(m), ..
            })
            | Probe::Epoch(Member {
                member: Some(m), ..
            }) => {
                set_run.execute(params![job, seq, RunId::child(m).0])?;
            }
            Probe::Epoch(Member { ensemble: true, .. }) => {
                // Its best epoch was the last member's last checkpoint epoch; it names
                // the ensemble's own epoch now.
                let mut kind: EventKind = rmp_serde::from_slice(&blob)?;
                if let EventKind::Epoch(end) = &mut kind
                    && end.best_epoch != 0
                {
                    end.best_epoch = epochs;
                    set_kind.execute(params![job, seq, rmp_serde::to_vec_named(&kind)?])?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Moves the job's checkpoint files from its folder into its runs' folders.
fn checkpoints_into_runs(
    state_dir: &Path,
    job: &str,
    epochs: u32,
    members: Option<u32>,
) -> Result<(), StoreError> {
    let dir = job_dir(state_dir, job);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut old_best = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".safetensors") else {
            continue;
        };
        let (best, epoch) = if let Some(n) = stem.strip_prefix("best-epoch-") {
            (true, n.parse::<u32>().ok())
        } else if let Some(n) = stem.strip_prefix("epoch-") {
            (false, n.parse::<u32>().ok())
        } else if stem == "resume" {
            (false, None)
        } else {
            continue;
        };
        let old = entry.path();
        let Some(members) = members else {
            // One model: the same files, in run 0.
            let to = run_dir(state_dir, job, RunId::JOB);
            std::fs::create_dir_all(&to)?;
            std::fs::rename(&old, to.join(&name))?;
            continue;
        };
        if best {
            // Only the ensemble's own epoch was ever best, and that was the last member's
            // last checkpoint, which is never pruned: it is linked again below, before
            // this link goes (so a crash in between leaves it to be found again).
            old_best.push(old);
            continue;
        }
        let mut c = match checkpoint::read(&old) {
            Ok(c) => c,
            Err(e) => {
                // Left where it is: the job cannot resume from it, but the server starts
                // and every other job is migrated.
                tracing::warn!(job, file = %old.display(), error = %e, "an old checkpoint cannot be read; it is left in place");
                continue;
            }
        };
        let global = epoch.unwrap_or(c.epoch);
        let member = global.saturating_sub(1) / epochs.max(1);
        c.epoch = global - member * epochs;
        checkpoint::write_checkpoint(&run_dir(state_dir, job, RunId::child(member)), &c)?;
        if c.iteration == 0 && c.epoch == epochs && member + 1 == members {
            // The last member's last checkpoint holds every member: the ensemble's.
            checkpoint::write_checkpoint(&run_dir(state_dir, job, RunId::JOB), &c)?;
        }
        std::fs::remove_file(&old)?;
    }
    let ensemble = checkpoint::path(&run_dir(state_dir, job, RunId::JOB), epochs);
    if !old_best.is_empty() && ensemble.exists() {
        checkpoint::keep_best(&dir.join("runs"), RunId::JOB, epochs)?;
    }
    for old in old_best {
        std::fs::remove_file(old)?;
    }
    // The moves must reach the disk before the migration is recorded as done.
    for (_, run) in checkpoint::run_dirs(&dir.join("runs"))? {
        std::fs::File::open(run)?.sync_all()?;
    }
    if dir.join("runs").exists() {
        std::fs::File::open(dir.join("runs"))?.sync_all()?;
    }
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use gradstream_domain::{
        Checkpoint, EnsembleSpec, EpochEnd, EventKind, HostTensor, IterationProgress, JobKind,
        JobSpec, RunId,
    };

    use crate::{BlobStore, JobRepository, SqliteStore, checkpoint, nanos, schema};

    const R0: RunId = RunId::JOB;

    fn ensemble_spec() -> JobSpec {
        JobSpec {
            epochs: 2,
            ensemble: Some(EnsembleSpec::BalancedBagging { members: 2 }),
            early_stopping: None,
            ..crate::suite::spec("e")
        }
    }

    /// An event record as the store wrote it before runs: `member` in the payload.
    fn legacy(kind: &EventKind, member: Option<u32>) -> Vec<u8> {
        let bytes = rmp_serde::to_vec_named(kind).unwrap();
        let mut v: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
        if let Some(m) = member {
            let payload = v.as_object_mut().unwrap().values_mut().next().unwrap();
            payload["member"] = m.into();
        }
        rmp_serde::to_vec_named(&v).unwrap()
    }

    fn epoch(epoch: u32, best_epoch: u32, ensemble: bool) -> EventKind {
        let labels = ["a".to_string(), "b".to_string()];
        let train = gradstream_metrics::evaluate(&labels, &[0, 1], &[0.9, 0.1, 0.2, 0.8], 0.5);
        EventKind::Epoch(Box::new(EpochEnd {
            epoch,
            train,
            validation: None,
            seconds: 1.0,
            best_epoch,
            best_run: RunId::JOB,
            ensemble,
            generalization_gap: None,
            overfitting: false,
            layers: Vec::new(),
            diagnostics_seconds: 0.0,
        }))
    }

    fn iteration(epoch: u32) -> EventKind {
        EventKind::Iteration(IterationProgress {
            epoch,
            iteration: 1,
            iterations_per_epoch: 1,
            global_step: 1,
            loss: 0.5,
            learning_rate: 0.1,
            samples_per_second: 10.0,
        })
    }

    fn ckpt(epoch: u32, iteration: u32, names: &[&str]) -> Checkpoint {
        Checkpoint {
            epoch,
            iteration,
            global_step: u64::from(epoch) * 7,
            dropout_word_pos: 3,
            tensors: names
                .iter()
                .map(|n| (n.to_string(), HostTensor::scalar_i64(i64::from(epoch))))
                .collect(),
        }
    }

    /// A state directory at schema 4 holding a finished ensemble, an ensemble stopped
    /// inside its second member, and a single model stopped mid-epoch, each with its
    /// checkpoints in the old layout: migration 5 moves them all into runs.
    #[test]
    fn old_state_moves_into_runs() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        {
            let mut conn = rusqlite::Connection::open(state.join("gradstream.db")).unwrap();
            schema::migrate_to(&mut conn, state, 4).unwrap();
            let add_job = |id: &str, spec: &JobSpec, events: Vec<Vec<u8>>| {
                conn.execute(
                    "INSERT INTO jobs (id, spec, created_ns, kind) VALUES (?1, ?2, 0, ?3)",
                    rusqlite::params![
                        id,
                        rmp_serde::to_vec_named(spec).unwrap(),
                        rmp_serde::to_vec_named(&JobKind::Training).unwrap()
                    ],
                )
                .unwrap();
                for (i, kind) in events.into_iter().enumerate() {
                    conn.execute(
                        "INSERT INTO events (job_id, seq, time_ns, kind) VALUES (?1, ?2, ?3, ?4)",
                        rusqlite::params![id, i as i64 + 1, nanos(SystemTime::now()), kind],
                    )
                    .unwrap();
                }
            };
            let spec = ensemble_spec();
            add_job(
                "done",
                &spec,
                vec![
                    legacy(&iteration(1), Some(0)),
                    legacy(&epoch(1, 0, false), Some(0)),
                    legacy(&epoch(2, 0, false), Some(0)),
                    legacy(&epoch(1, 0, false), Some(1)),
                    legacy(&epoch(2, 0, false), Some(1)),
                    legacy(&epoch(2, 4, true), None),
                ],
            );
            add_job(
                "mid",
                &spec,
                vec![
                    legacy(&epoch(1, 0, false), Some(0)),
                    legacy(&epoch(2, 0, false), Some(0)),
                    legacy(&epoch(1, 0, false), Some(1)),
                ],
            );
            let single = JobSpec {
                epochs: 3,
                ..crate::suite::spec("one")
            };
            add_job("one", &single, vec![legacy(&epoch(1, 1, false), None)]);
        }
        let jobs = |id: &str| state.join("jobs").join(id);
        let write = |id: &str, c: &Checkpoint| {
            checkpoint::write_checkpoint(&jobs(id), c).unwrap();
        };
        // The finished ensemble: its last checkpoint (epoch 4 = member 1's epoch 2) holds
        // member 0's variables and its own, and is also the kept best.
        write("done", &ckpt(2, 0, &["member0.model.w", "model.w"]));
        write(
            "done",
            &ckpt(4, 0, &["member0.model.w", "model.w", "opt.m"]),
        );
        std::fs::hard_link(
            checkpoint::path(&jobs("done"), 4),
            checkpoint::best_path(&jobs("done"), 4),
        )
        .unwrap();
        // Stopped in member 1's second epoch (checkpoint epoch 4, after 5 batches).
        write("mid", &ckpt(3, 0, &["member0.model.w", "model.w"]));
        write(
            "mid",
            &ckpt(4, 5, &["member0.model.w", "model.w", "partial.logits"]),
        );
        // An unreadable one (member 0's epoch 2, say) does not stop the migration.
        std::fs::write(checkpoint::path(&jobs("mid"), 2), b"not a checkpoint").unwrap();
        write("one", &ckpt(1, 0, &["model.w"]));
        write("one", &ckpt(2, 3, &["model.w"]));

        let s = SqliteStore::open(state).unwrap();
        let loaded = s.load_jobs().unwrap();
        let runs = |id: &str| -> Vec<u32> {
            loaded
                .iter()
                .find(|j| j.id == id)
                .unwrap()
                .events
                .iter()
                .map(|e| e.run.0)
                .collect()
        };
        assert_eq!(runs("done"), [1, 1, 1, 2, 2, 0]);
        assert_eq!(runs("mid"), [1, 1, 2]);
        assert_eq!(runs("one"), [0]);
        let done = loaded.iter().find(|j| j.id == "done").unwrap();
        match &done.events[5].kind {
            EventKind::Epoch(e) => assert_eq!((e.epoch, e.best_epoch, e.ensemble), (2, 2, true)),
            other => panic!("expected the ensemble's epoch, got {other:?}"),
        }

        // Member runs count their own epochs; the ensemble's model is run 0's epoch 2.
        let (m0, m1) = (RunId::child(0), RunId::child(1));
        assert_eq!(
            s.read_checkpoint("done", m0, 2).unwrap(),
            ckpt(2, 0, &["member0.model.w", "model.w"])
        );
        let last = s.read_checkpoint("done", m1, 2).unwrap();
        assert_eq!((last.epoch, last.global_step), (2, 28));
        let model = s.model_checkpoint("done", R0, 2).unwrap().unwrap();
        assert_eq!(model, last);
        std::fs::remove_file(checkpoint::path(&s.run_dir("done", R0), 2)).unwrap();
        assert_eq!(
            s.model_checkpoint("done", R0, 2).unwrap(),
            Some(last),
            "the kept best, linked again in run 0"
        );

        assert_eq!(s.read_checkpoint("mid", m1, 1).unwrap().epoch, 1);
        let (run, resume) = s.take_resume_checkpoint("mid").unwrap().unwrap();
        assert_eq!((run, resume.epoch, resume.iteration), (m1, 2, 5));

        assert_eq!(
            s.read_checkpoint("one", R0, 1).unwrap(),
            ckpt(1, 0, &["model.w"])
        );
        assert_eq!(
            s.take_resume_checkpoint("one").unwrap(),
            Some((R0, ckpt(2, 3, &["model.w"])))
        );
        for (id, want) in [
            ("done", &["runs"][..]),
            ("mid", &["epoch-000002.safetensors", "runs"]),
            ("one", &["runs"]),
        ] {
            let mut left: Vec<String> = std::fs::read_dir(jobs(id))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            assert_eq!(
                left, want,
                "{id}: the runs folder and what could not be read"
            );
        }
    }
}
