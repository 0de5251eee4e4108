//! The training loss of each step, left on the device and read back a batch of steps at a
//! time: the step path makes no host synchronisation of its own. A read gives each step's
//! loss and its batch's total class weight (for the epoch's training loss), in step order,
//! so a check on them still names the first bad step.

use tch::{Device, Kind, Tensor};

use crate::EngineError;

/// Steps whose losses wait on the device at most, however rarely progress is reported.
pub(crate) const READ_EVERY: usize = 64;

/// Where a step was, for the message that names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepAt {
    pub step: u64,
    pub epoch: u32,
    pub iteration: u32,
    pub learning_rate: f64,
    pub samples: usize,
}

/// One step's loss, read back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepLoss {
    pub at: StepAt,
    pub loss: f64,
    /// The sum of the batch's rows' class weights (its row count when unweighted): what
    /// the mean loss was divided by.
    pub weight: f64,
}

impl StepLoss {
    /// Only rows of class weight 0: its loss is 0/0 and the batch has nothing to teach.
    pub fn weightless(&self) -> bool {
        self.weight == 0.0
    }
}

/// Losses not yet read, in step order.
#[derive(Default)]
pub(crate) struct StepLosses {
    at: Vec<StepAt>,
    losses: Vec<Tensor>,
    /// One per loss when the batches are weighted, else none (the weight is the row count).
    weights: Vec<Tensor>,
}

impl StepLosses {
    /// Keeps a step's (0-dim) loss and, for weighted batches, its total class weight.
    pub fn push(&mut self, at: StepAt, loss: &Tensor, weight: Option<Tensor>) {
        self.at.push(at);
        self.losses.push(loss.detach());
        if let Some(w) = weight {
            self.weights.push(w);
        }
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Every waiting step's loss, in order, in one copy from the device.
    pub fn read(&mut self) -> Result<Vec<StepLoss>, EngineError> {
        if self.at.is_empty() {
            return Ok(Vec::new());
        }
        let weighted = !self.weights.is_empty();
        let mut parts = vec![Tensor::f_stack(&std::mem::take(&mut self.losses), 0)?];
        if weighted {
            parts.push(Tensor::f_stack(&std::mem::take(&mut self.weights), 0)?);
        }
        let parts = parts
            .iter()
            .map(|t| t.f_to_kind(Kind::Double))
            .collect::<Result<Vec<_>, _>>()?;
        let host = Tensor::f_cat(&parts, 0)?.f_to_device(Device::Cpu)?;
        let host = Vec::<f64>::try_from(&host)?;
        let n = self.at.len();
        Ok(std::mem::take(&mut self.at)
            .into_iter()
            .enumerate()
            .map(|(i, at)| StepLoss {
                at,
                loss: host[i],
                weight: if weighted {
                    host[n + i]
                } else {
                    at.samples as f64
                },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(step: u64, samples: usize) -> StepAt {
        StepAt {
            step,
            epoch: 1,
            iteration: step as u32,
            learning_rate: 0.1,
            samples,
        }
    }

    #[test]
    fn reads_every_step_once_in_order_with_its_weight() {
        let mut l = StepLosses::default();
        assert!(l.read().unwrap().is_empty());
        for (i, v) in [0.5f32, f32::NAN, 2.0].iter().enumerate() {
            l.push(at(i as u64 + 1, 64), &Tensor::from(*v), None);
        }
        let read = l.read().unwrap();
        assert_eq!(l.len(), 0);
        assert_eq!(
            read.iter().map(|s| s.at.step).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(read[0].loss, 0.5);
        assert!(read[1].loss.is_nan());
        assert!(read.iter().all(|s| s.weight == 64.0 && !s.weightless()));

        l.push(at(4, 8), &Tensor::from(1.5f32), Some(Tensor::from(0.0f64)));
        l.push(at(5, 8), &Tensor::from(0.25f32), Some(Tensor::from(3.5f64)));
        let read = l.read().unwrap();
        assert_eq!((read[0].weight, read[1].weight), (0.0, 3.5));
        assert!(read[0].weightless() && !read[1].weightless());
        assert_eq!(read[1].loss, 0.25);
    }
}
