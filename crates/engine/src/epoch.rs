//! What one epoch gathers while it trains: its progress window, what its training metrics
//! are made of, and the inputs of its layer diagnostics. Training outputs stay on the
//! device: each batch leaves its predicted classes there (one `argmax`), and the epoch's
//! confusion counts are one `bincount` at its end; the training loss is summed from the
//! step losses as they are read back. The logits themselves are kept only when there is no
//! validation split, whose place the training split's curves then take.

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::epoch_metrics::{Scores, TrainOutputs};
use crate::window::Window;

/// Checkpoint entries of a mid-epoch stop: the outputs of the epoch's first batches.
const TARGETS: &str = "partial.targets";
const PREDICTIONS: &str = "partial.predictions";
/// `[sum of loss x weight, sum of weights]`, f64.
const LOSS: &str = "partial.loss";
const LOGITS: &str = "partial.logits";

/// The outputs of an epoch's first batches, trained before a stop.
pub(crate) struct Partial {
    targets: Tensor,
    predictions: Tensor,
    logits: Option<Tensor>,
    loss: (f64, f64),
}

impl Partial {
    /// The partial outputs among a checkpoint's entries (moved to `device`), if it has
    /// them. A checkpoint from before predictions were kept has only logits and targets:
    /// its predictions are their argmax and its loss sums `loss_of(logits, targets)`.
    pub fn from_entries(
        entries: &[(String, Tensor)],
        device: Device,
        loss_of: impl Fn(&Tensor, &Tensor) -> Result<(f64, f64), tch::TchError>,
    ) -> Result<Option<Self>, tch::TchError> {
        let get = |key: &str| {
            entries
                .iter()
                .find(|(n, _)| n == key)
                .map(|(_, t)| t.f_to_device(device))
                .transpose()
        };
        let Some(targets) = get(TARGETS)? else {
            return Ok(None);
        };
        let logits = get(LOGITS)?;
        let (predictions, loss) = match (get(PREDICTIONS)?, get(LOSS)?, &logits) {
            (Some(p), Some(l), _) => {
                let l = Vec::<f64>::try_from(&l.f_to_device(Device::Cpu)?)?;
                (p, (l[0], l[1]))
            }
            (_, _, Some(logits)) => (logits.f_argmax(-1, false)?, loss_of(logits, &targets)?),
            _ => return Ok(None),
        };
        Ok(Some(Self {
            targets,
            predictions,
            logits,
            loss,
        }))
    }
}

pub(crate) struct Epoch {
    pub epoch: u32,
    pub start: Instant,
    pub window: Window,
    /// Training-mode logits of every batch, when kept (no validation split).
    logits: Option<Vec<Tensor>>,
    predictions: Vec<Tensor>,
    targets: Vec<Tensor>,
    /// Sums over the epoch's batches of loss x weight and of weight.
    loss_sum: f64,
    weight_sum: f64,
    /// Layer diagnostics: the weights before the epoch's last step, that step's batch, and
    /// the time spent on them.
    pub before_last_step: Vec<(String, Tensor)>,
    pub last_batch: Option<Tensor>,
    pub diagnostics_seconds: f64,
}

impl Epoch {
    pub fn new(epoch: u32, ipe: usize, keep_logits: bool, partial: Option<Partial>) -> Self {
        let mut e = Self {
            epoch,
            start: Instant::now(),
            window: Window::new(),
            logits: keep_logits.then(|| Vec::with_capacity(ipe)),
            predictions: Vec::with_capacity(ipe),
            targets: Vec::with_capacity(ipe),
            loss_sum: 0.0,
            weight_sum: 0.0,
            before_last_step: Vec::new(),
            last_batch: None,
            diagnostics_seconds: 0.0,
        };
        // Resuming inside an epoch: its first batches were trained before the stop.
        if let Some(p) = partial {
            e.predictions.push(p.predictions);
            e.targets.push(p.targets);
            if let (Some(all), Some(l)) = (e.logits.as_mut(), p.logits) {
                all.push(l);
            }
            (e.loss_sum, e.weight_sum) = p.loss;
        }
        e
    }

    /// A batch's training-mode outputs.
    pub fn record(&mut self, logits: &Tensor, targets: Tensor) -> Result<(), tch::TchError> {
        self.predictions.push(logits.f_argmax(-1, false)?);
        if let Some(all) = self.logits.as_mut() {
            all.push(logits.detach());
        }
        self.targets.push(targets);
        Ok(())
    }

    /// A step's loss, read back, with what it was the mean over.
    pub fn add_loss(&mut self, loss: f64, weight: f64) {
        self.loss_sum += loss * weight;
        self.weight_sum += weight;
    }

    /// What the epoch's training metrics are made of: its logits when kept, else its
    /// confusion counts (one reduction on the device, `k * k` numbers copied back) and
    /// mean loss.
    pub fn train_outputs(&self, classes: usize) -> Result<TrainOutputs, tch::TchError> {
        if let Some(logits) = &self.logits {
            return Ok(TrainOutputs::Scores(Scores::from_batches(
                logits,
                &self.targets,
            )?));
        }
        let k = classes as i64;
        let cells = Tensor::f_cat(&self.targets, 0)?
            .f_mul_scalar(k)?
            .f_add(&Tensor::f_cat(&self.predictions, 0)?)?;
        let counts = cells
            .f_bincount::<Tensor>(None, k * k)?
            .f_to_device(Device::Cpu)?;
        let counts = Vec::<i64>::try_from(&counts)?
            .into_iter()
            .map(|c| c as u64)
            .collect();
        let loss = if self.weight_sum > 0.0 {
            self.loss_sum / self.weight_sum
        } else {
            0.0
        };
        Ok(TrainOutputs::Counted { counts, loss })
    }

    /// Checkpoint entries holding the outputs so far, for a stop after `i` batches.
    pub fn partial_entries(&self) -> Result<Vec<(String, Tensor)>, tch::TchError> {
        let cpu = |t: Tensor| t.f_to_device(Device::Cpu).map(|t| t.copy());
        let mut out = vec![
            (TARGETS.into(), cpu(Tensor::f_cat(&self.targets, 0)?)?),
            (
                PREDICTIONS.into(),
                cpu(Tensor::f_cat(&self.predictions, 0)?)?,
            ),
            (
                LOSS.into(),
                Tensor::from_slice(&[self.loss_sum, self.weight_sum]).to_kind(Kind::Double),
            ),
        ];
        if let Some(logits) = &self.logits {
            out.push((LOGITS.into(), cpu(Tensor::f_cat(logits, 0)?)?));
        }
        Ok(out)
    }
}
