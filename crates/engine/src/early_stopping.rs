//! Early stopping: ends a run once the spec's `best_model_metric` stops improving.

use gradstream_domain::{EpochEnd, JobSpec};

/// Counts epochs without improvement of the spec's `best_model_metric`.
pub(crate) struct EarlyStopper {
    rule: gradstream_domain::EarlyStopping,
    best: Option<(u32, f64)>,
    since_best: u32,
}

impl EarlyStopper {
    /// `[best epoch (0: none yet), best score, epochs since the best]`, for checkpoints.
    pub(crate) fn state(&self) -> [f64; 3] {
        let (epoch, score) = self.best.unwrap_or((0, 0.0));
        [f64::from(epoch), score, f64::from(self.since_best)]
    }

    pub(crate) fn restore(&mut self, state: &[f64]) {
        if let [epoch, score, since] = *state {
            self.best = (epoch >= 1.0).then_some((epoch as u32, score));
            self.since_best = since as u32;
        }
    }

    pub(crate) fn new(rule: gradstream_domain::EarlyStopping) -> Self {
        Self {
            rule,
            best: None,
            since_best: 0,
        }
    }

    /// Records an epoch; why training should stop, if it should.
    pub(crate) fn update(&mut self, spec: &JobSpec, end: &EpochEnd) -> Option<String> {
        let metric = spec.best_model_metric;
        let score = metric.score(end.selection_metrics());
        match (self.best, score) {
            (None, Some(s)) => self.best = Some((end.epoch, s)),
            (Some((_, b)), Some(s)) if s > b + self.rule.min_delta => {
                self.best = Some((end.epoch, s));
                self.since_best = 0;
            }
            _ => self.since_best += 1,
        }
        if self.since_best < self.rule.patience || end.epoch >= spec.epochs {
            return None;
        }
        let (best_epoch, best) = self.best?;
        let value = metric.value_of_score(best);
        Some(format!(
            "stopped early after epoch {}: {:?} has not improved by more than {} for {} epoch(s); the best epoch is {best_epoch} ({value:.6}), and its weights are the job's model",
            end.epoch, metric, self.rule.min_delta, self.rule.patience
        ))
    }
}
