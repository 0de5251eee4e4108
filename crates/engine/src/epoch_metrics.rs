//! Epoch metrics are computed off the training thread. At an epoch end the training thread
//! hands this worker what the epoch's metrics are made of (the validation split's logits
//! in host memory; the training outputs reduced on the device to confusion counts and a
//! loss, or their logits when there is no validation split), then goes on training; finished metrics are picked up at the next iteration boundary and reported
//! from the training thread, in epoch order. The worker is plain Rust (no libtorch calls),
//! so it never competes for libtorch's thread pool.

use std::sync::mpsc;
use std::thread::JoinHandle;

use tch::{Device, Kind, Tensor};

use super::{EngineError, Observer};
use gradstream_domain::{EpochEnd, LayerDiagnostics, LossSpec, RunId};
use gradstream_metrics::{self as metrics, Metrics};

/// Logits (row-major `n x k`) and true classes of one pass, in host memory.
pub struct Scores {
    pub logits: Vec<f32>,
    pub targets: Vec<usize>,
}

impl Scores {
    /// Concatenates per-batch logits and targets and copies them to host memory.
    pub fn from_batches(logits: &[Tensor], targets: &[Tensor]) -> Result<Self, tch::TchError> {
        Self::from_tensors(&Tensor::f_cat(logits, 0)?, &Tensor::f_cat(targets, 0)?)
    }

    pub fn from_tensors(logits: &Tensor, targets: &Tensor) -> Result<Self, tch::TchError> {
        let targets = Vec::<i64>::try_from(&targets.f_to_device(Device::Cpu)?)?;
        Self::with_targets(logits, targets.into_iter().map(|t| t as usize).collect())
    }

    pub fn with_targets(logits: &Tensor, targets: Vec<usize>) -> Result<Self, tch::TchError> {
        let logits = logits
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_flatten(0, -1)?;
        Ok(Self {
            logits: Vec::<f32>::try_from(&logits)?,
            targets,
        })
    }
}

/// What the training metrics of an epoch are made of.
pub enum TrainOutputs {
    /// Training-mode logits of every batch (no validation split: curves of these).
    Scores(Scores),
    /// Confusion counts (row-major `k x k`, actual by predicted) and the mean loss.
    Counted { counts: Vec<u64>, loss: f64 },
}

/// What an epoch produced, for the worker to turn into metrics.
pub struct EpochOutputs {
    pub epoch: u32,
    pub seconds: f64,
    pub train: TrainOutputs,
    /// Evaluation-mode outputs on the validation split.
    pub validation: Option<Scores>,
    /// Per-layer diagnostics at the epoch's end, and the time they took.
    pub layers: Vec<LayerDiagnostics>,
    pub diagnostics_seconds: f64,
}

pub struct MetricsWorker {
    /// Holds one epoch waiting while another is computed: training runs at most two epochs
    /// ahead of its metrics, so memory stays bounded when metrics are slower than training.
    tx: Option<mpsc::SyncSender<EpochOutputs>>,
    rx: mpsc::Receiver<EpochEnd>,
    handle: Option<JoinHandle<()>>,
    /// The run whose epochs these are.
    run: RunId,
}

impl MetricsWorker {
    pub fn spawn(labels: Vec<String>, loss: LossFn, run: RunId) -> Result<Self, EngineError> {
        let (tx, work) = mpsc::sync_channel::<EpochOutputs>(1);
        let (done, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("epoch-metrics".into())
            .spawn(move || {
                // (train loss, validation loss) of the previous epoch.
                let mut previous: Option<(f64, f64)> = None;
                for out in work {
                    let end = EpochEnd {
                        epoch: out.epoch,
                        // Curves of the training split only when there is no validation split.
                        train: match out.train {
                            TrainOutputs::Scores(s) => {
                                metrics_of(&s, &loss, &labels, out.validation.is_none())
                            }
                            TrainOutputs::Counted { counts, loss } => {
                                metrics::evaluate_counts(&labels, counts, loss)
                            }
                        },
                        validation: out
                            .validation
                            .as_ref()
                            .map(|v| metrics_of(v, &loss, &labels, true)),
                        seconds: out.seconds,
                        best_epoch: 0,
                        best_run: RunId::JOB,
                        ensemble: false,
                        generalization_gap: None,
                        overfitting: false,
                        layers: out.layers,
                        diagnostics_seconds: out.diagnostics_seconds,
                    };
                    let mut end = end;
                    if let Some(v) = &end.validation {
                        let now = (end.train.loss, v.loss);
                        end.generalization_gap = Some(now.1 - now.0);
                        end.overfitting = previous.is_some_and(|(t, v)| now.1 > v && now.0 < t);
                        previous = Some(now);
                    }
                    if done.send(end).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| EngineError::Internal(format!("cannot start the metrics thread: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            rx,
            handle: Some(handle),
            run,
        })
    }

    pub fn submit(&mut self, outputs: EpochOutputs) -> Result<(), EngineError> {
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(outputs).ok())
            .ok_or_else(|| EngineError::Internal("the metrics thread stopped".into()))
    }

    /// Reports every epoch whose metrics are ready, without waiting.
    pub fn poll(&mut self, observer: &mut dyn Observer) {
        while let Ok(end) = self.rx.try_recv() {
            observer.epoch_end(self.run, end);
        }
    }

    /// Waits for the next epoch's metrics and returns them; the caller reports them.
    pub fn next(&mut self) -> Result<EpochEnd, EngineError> {
        self.rx
            .recv()
            .map_err(|_| EngineError::Internal("the metrics thread stopped".into()))
    }

    /// Waits for and reports the remaining epochs.
    pub fn finish(mut self, observer: &mut dyn Observer) -> Result<(), EngineError> {
        drop(self.tx.take());
        for end in self.rx.iter() {
            observer.epoch_end(self.run, end);
        }
        match self.handle.take().map(JoinHandle::join) {
            Some(Err(_)) => Err(EngineError::Internal("the metrics thread panicked".into())),
            _ => Ok(()),
        }
    }
}

/// Most points per curve in an epoch's metrics (first and last always kept).
pub const EPOCH_CURVE_POINTS: usize = 200;

/// Mean cross-entropy (weighted as PyTorch's `weight=`: sum(w_y * nll) / sum(w_y)), and
/// every metric derived from the softmax probabilities; with `curves`, also the ROC and PR
/// curves (downsampled to [`EPOCH_CURVE_POINTS`]) and the macro average precision.
pub fn metrics_of(scores: &Scores, loss: &LossFn, labels: &[String], curves: bool) -> Metrics {
    let k = labels.len();
    let mut probs = Vec::with_capacity(scores.logits.len());
    let mut sum = WeightedMean::default();
    for (row, &y) in scores.logits.chunks_exact(k).zip(&scores.targets) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let total: f64 = row.iter().map(|&z| (z as f64 - max).exp()).sum();
        let log_norm = max + total.ln();
        probs.extend(row.iter().map(|&z| (z as f64 - log_norm).exp() as f32));
        loss.add(&mut sum, y, row[y] as f64 - log_norm);
    }
    probability_metrics(labels, &scores.targets, &probs, sum.mean(), curves)
}

/// Metrics of class probabilities (row-major `n x k`); with `curves`, downsampled curves too.
pub fn probability_metrics(
    labels: &[String],
    targets: &[usize],
    probs: &[f32],
    loss: f64,
    curves: bool,
) -> Metrics {
    if curves {
        let mut m = metrics::evaluate_with_curves(labels, targets, probs, loss);
        m.downsample_curves(EPOCH_CURVE_POINTS);
        m
    } else {
        metrics::evaluate(labels, targets, probs, loss)
    }
}

/// The training loss as a plain-Rust function of the true class's log-probability:
/// `-w_y (1 - p_y)^gamma log p_y` (gamma 0: cross-entropy), averaged like PyTorch's weighted
/// cross-entropy: divided by the sum of the rows' class weights.
#[derive(Debug, Clone)]
pub struct LossFn {
    /// Empty: every class weighs 1.
    pub class_weights: Vec<f64>,
    pub gamma: f64,
}

impl LossFn {
    pub fn new(class_weights: &[f64], loss: LossSpec) -> Self {
        Self {
            class_weights: class_weights.to_vec(),
            gamma: match loss {
                LossSpec::CrossEntropy => 0.0,
                LossSpec::Focal { gamma } => gamma,
            },
        }
    }

    fn add(&self, sum: &mut WeightedMean, y: usize, log_p: f64) {
        let w = self.class_weights.get(y).copied().unwrap_or(1.0);
        let focus = if self.gamma == 0.0 {
            1.0
        } else {
            (1.0 - log_p.exp()).max(0.0).powf(self.gamma)
        };
        sum.total += w * focus * -log_p;
        sum.weight += w;
    }

    /// The loss of class probabilities (row-major `n x k`) against `targets`.
    pub fn of_probabilities(&self, probs: &[f32], targets: &[usize]) -> f64 {
        let k = probs.len() / targets.len().max(1);
        let mut sum = WeightedMean::default();
        for (row, &y) in probs.chunks_exact(k.max(1)).zip(targets) {
            self.add(&mut sum, y, f64::from(row[y]).ln());
        }
        sum.mean()
    }
}

#[derive(Default)]
struct WeightedMean {
    total: f64,
    weight: f64,
}

impl WeightedMean {
    fn mean(&self) -> f64 {
        if self.weight > 0.0 {
            self.total / self.weight
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Reduction;

    #[test]
    fn loss_matches_libtorch_cross_entropy_with_and_without_weights() {
        let logits = Tensor::randn([50, 3], (Kind::Float, Device::Cpu)) * 3.0;
        let targets = Tensor::randint(3, [50], (Kind::Int64, Device::Cpu));
        let scores = Scores::from_tensors(&logits, &targets).unwrap();
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        for weights in [vec![], vec![0.5, 2.0, 1.0]] {
            let w =
                (!weights.is_empty()).then(|| Tensor::from_slice(&weights).to_kind(Kind::Float));
            let want = logits
                .cross_entropy_loss(&targets, w.as_ref(), Reduction::Mean, -100, 0.0)
                .double_value(&[]);
            let got = metrics_of(
                &scores,
                &LossFn::new(&weights, LossSpec::CrossEntropy),
                &labels,
                false,
            )
            .loss;
            assert!(
                (got - want).abs() < 1e-5 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
        let m = metrics_of(
            &scores,
            &LossFn::new(&[], LossSpec::CrossEntropy),
            &labels,
            false,
        );
        let want_acc = logits
            .argmax(-1, false)
            .eq_tensor(&targets)
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]);
        assert!((m.accuracy - want_acc).abs() < 1e-12);
    }
}
