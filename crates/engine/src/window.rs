//! The progress window: loss and throughput between two progress reports.

use std::time::Instant;

/// Loss and throughput since the last progress report.
pub(crate) struct Window {
    start: Instant,
    loss_sum: f64,
    steps: usize,
    samples: usize,
}

impl Window {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            loss_sum: 0.0,
            steps: 0,
            samples: 0,
        }
    }

    pub(crate) fn add(&mut self, loss: f64, samples: usize) {
        self.loss_sum += loss;
        self.steps += 1;
        self.samples += samples;
    }

    pub(crate) fn mean_loss(&self) -> f64 {
        self.loss_sum / self.steps.max(1) as f64
    }

    pub(crate) fn samples_per_second(&self) -> f64 {
        let s = self.start.elapsed().as_secs_f64();
        if s > 0.0 {
            self.samples as f64 / s
        } else {
            0.0
        }
    }
}
