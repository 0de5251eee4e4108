//! The range-test kind (`FindLearningRate`): the learning-rate range test on the spec's
//! model, optimizer and data, its points recorded as events and its suggestion as the last
//! one. Suggestions are remembered by spec, so a later training job of the same spec that
//! diverges quotes one.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::{EventKind, JobKind, JobSpec, LrSchedule, LrSuggestion, RangeTest};
use crate::engine::{self, EngineError};
use crate::jobs::kind::{Outcome, RunContext};
use crate::store::StoredJob;

use super::{Kinds, training};

pub(super) fn run(kinds: &Kinds, ctx: &mut RunContext<'_>, test: RangeTest) -> Outcome {
    let ctx: &RunContext<'_> = ctx;
    // Its result was recorded before the process stopped: the test is done.
    if let Some(s) = ctx
        .events_matching(|k| match k {
            EventKind::RangeResult(s) => Some(*s),
            _ => None,
        })
        .pop()
    {
        return succeeded(kinds, ctx, s);
    }
    let data = match training::dataset(kinds, ctx) {
        Ok(training::JobData::InMemory(d)) => d,
        // Refused at submit; a server restarted with a lower limit can get here.
        Ok(training::JobData::Streamed(_)) => {
            return Outcome::Failed(
                "a learning-rate range test reads its dataset in memory, and this one is now streamed (larger than --max-in-memory-dataset-bytes)".into(),
            );
        }
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    // A test interrupted by a restart runs again from its start; it draws the same points
    // (same seed), so only those after the recorded ones are new.
    let recorded = ctx
        .events_matching(|k| matches!(k, EventKind::RangePoint(_)).then_some(()))
        .len() as u32;
    let found = engine::find_learning_rate(
        ctx.spec(),
        &data,
        kinds.config.device,
        test,
        &mut |p| {
            if p.iteration > recorded {
                ctx.push(EventKind::RangePoint(p));
            }
        },
        ctx.cancel_flag(),
    );
    match found {
        Ok(s) => {
            ctx.push(EventKind::RangeResult(s));
            succeeded(kinds, ctx, s)
        }
        Err(EngineError::Cancelled) => Outcome::Stopped,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn succeeded(kinds: &Kinds, ctx: &RunContext<'_>, s: LrSuggestion) -> Outcome {
    kinds.suggestions.insert(ctx.spec(), s.suggested);
    Outcome::Succeeded(format!(
        "suggested learning rate {:e} after {} iteration(s)",
        s.suggested, s.iterations
    ))
}

/// Learning rates suggested by finished range tests, by what a range test depends on.
#[derive(Default)]
pub(crate) struct Suggestions {
    by_spec: Mutex<HashMap<String, f64>>,
}

impl Suggestions {
    /// The suggestions of the stored range tests that finished, later ones winning.
    pub fn from_stored(jobs: &[StoredJob]) -> Self {
        let s = Self::default();
        for job in jobs {
            if !matches!(job.kind, JobKind::RangeTest(_)) {
                continue;
            }
            for e in &job.events {
                if let EventKind::RangeResult(r) = &e.kind {
                    s.insert(&job.spec, r.suggested);
                }
            }
        }
        s
    }

    pub fn insert(&self, spec: &JobSpec, learning_rate: f64) {
        self.lock().insert(key(spec), learning_rate);
    }

    pub fn get(&self, spec: &JobSpec) -> Option<f64> {
        self.lock().get(&key(spec)).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, f64>> {
        self.by_spec.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a range test depends on: the spec without its learning rate, schedule, epochs,
/// early stopping and name.
fn key(spec: &JobSpec) -> String {
    let mut s = spec.clone();
    s.name.clear();
    s.learning_rate = 0.0;
    s.epochs = 0;
    s.lr_schedule = LrSchedule::Constant;
    s.early_stopping = None;
    serde_json::to_string(&s).unwrap_or_default()
}
