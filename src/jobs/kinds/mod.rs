//! The closed set of job kinds, run by the scheduler through [`Runner`]. Each kind is one
//! module: `training` (one model or an ensemble) and `range_test` (`FindLearningRate`).
//! A new kind is a `domain::JobKind` variant, a module here and an arm in each match below.

mod range_test;
mod training;

use std::sync::Arc;

pub(crate) use range_test::Suggestions;

use super::JobsConfig;
use super::job::JobSnapshot;
use super::kind::{Interruption, Outcome, RunContext, Runner, Start};
use crate::domain::{JobKind, RunId};
use crate::engine;
use crate::store::StateStore;

/// Runs every kind of job with the job manager's settings.
pub(super) struct Kinds {
    pub config: JobsConfig,
    pub store: Arc<dyn StateStore>,
    pub suggestions: Suggestions,
}

impl Runner for Kinds {
    fn starting(&self, job: &JobSnapshot) -> Start {
        let device = engine::device_name(self.config.device);
        let message = match (job.kind, job.epochs_completed) {
            (JobKind::Training, 0) => format!("training on {device}"),
            (JobKind::Training, e) => {
                format!("resumed after {e} complete epoch(s), training on {device}")
            }
            (JobKind::RangeTest(t), _) => format!(
                "range test: {} iterations from learning rate {:e} to {:e}, on {device}",
                t.iterations, t.min_lr, t.max_lr
            ),
        };
        Start { device, message }
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Outcome {
        match ctx.kind() {
            JobKind::Training => training::run(self, ctx),
            JobKind::RangeTest(test) => range_test::run(self, ctx, test),
        }
    }

    fn interrupted(&self, job: &JobSnapshot, why: Interruption) -> String {
        match (job.kind, why) {
            (JobKind::Training, Interruption::Restart) => match job.last_model {
                None => "the server restarted while this job was running, before its first epoch ended; it will start again".into(),
                Some((run, epoch)) => format!(
                    "the server restarted while this job was running; it will resume from the checkpoint of epoch {epoch}{}, its last recorded one",
                    if run == RunId::JOB { String::new() } else { format!(" of run {run}") }
                ),
            },
            (JobKind::Training, Interruption::Shutdown) => format!(
                "stopped by a server shutdown after {} complete epoch(s); it will resume where it stopped when the server restarts",
                job.epochs_completed
            ),
            (JobKind::RangeTest(_), Interruption::Restart) => "the server restarted while this range test was running; it will run again from its start (recording only the points not yet recorded)".into(),
            (JobKind::RangeTest(_), Interruption::Shutdown) => "stopped by a server shutdown; the range test will run again from its start when the server restarts (recording only the points not yet recorded)".into(),
        }
    }
}
