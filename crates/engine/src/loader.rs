//! How batches reach the training loop. The loop sees only [`BatchLoader`]: the in-memory
//! loaders here, and the streaming one of a stored dataset ([`crate::StreamingLoader`]).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::{EngineError, TrainSplit};
use gradstream_data::imbalance::{Resampled, Resampling, resample};

/// One mini-batch: features `[b, d]` (float) and class indices `[b]` (int64).
pub struct Batch {
    pub features: Tensor,
    pub targets: Tensor,
}

/// A source of training batches, one epoch at a time.
pub trait BatchLoader {
    /// Samples per epoch.
    fn samples(&self) -> usize;
    /// Samples per batch (the last batch of an epoch may be smaller).
    fn batch_size(&self) -> usize;
    /// `ceil(samples / batch_size)`.
    fn batches_per_epoch(&self) -> usize {
        self.samples().div_ceil(self.batch_size())
    }
    /// The batches of one epoch (1-based), in training order.
    fn epoch(&mut self, epoch: u32) -> Box<dyn Iterator<Item = Batch> + '_>;
    /// Why the last epoch's batches ended before the epoch did, if they did (a loader
    /// that reads files can fail); the training loop fails the job with it.
    fn take_error(&mut self) -> Option<EngineError> {
        None
    }
}

/// Holds the split on the device; shuffles each epoch with a seeded generator.
pub struct InMemoryLoader {
    features: Tensor,
    targets: Tensor,
    batch_size: usize,
    seed: u64,
    device: Device,
}

impl InMemoryLoader {
    /// `features` is row-major `[n, width]`; `targets` class indices.
    pub fn new(
        features: &[f32],
        width: usize,
        targets: &[usize],
        batch_size: usize,
        seed: u64,
        device: Device,
    ) -> Self {
        let n = targets.len() as i64;
        let t: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
        Self {
            features: Tensor::from_slice(features)
                .view([n, width as i64])
                .to_device(device),
            targets: Tensor::from_slice(&t).to_device(device),
            batch_size,
            seed,
            device,
        }
    }
}

impl BatchLoader for InMemoryLoader {
    fn samples(&self) -> usize {
        self.targets.size()[0] as usize
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn epoch(&mut self, epoch: u32) -> Box<dyn Iterator<Item = Batch> + '_> {
        let n = self.samples();
        let mut order: Vec<i64> = (0..n as i64).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (u64::from(epoch) << 32));
        order.shuffle(&mut rng);
        let index = Tensor::from_slice(&order).to_device(self.device);
        let xs = self.features.index_select(0, &index);
        let ys = self.targets.index_select(0, &index);
        let bs = self.batch_size as i64;
        Box::new((0..n as i64).step_by(self.batch_size).map(move |start| {
            let len = bs.min(n as i64 - start);
            Batch {
                features: xs.narrow(0, start, len),
                targets: ys.narrow(0, start, len),
            }
        }))
    }
}

/// The training split resampled (oversampled, undersampled or SMOTE), once before training
/// or anew every epoch, each draw from a generator seeded by the job and the epoch. Only
/// the training split ever goes through it.
pub struct ResamplingLoader {
    split: TrainSplit,
    method: Resampling,
    per_epoch: bool,
    resample_seed: u64,
    /// The current draw (its batch size, shuffle seed and device are the loader's).
    inner: InMemoryLoader,
    /// The epoch `inner` was drawn for (0: the one draw for all epochs).
    drawn: u32,
}

impl ResamplingLoader {
    /// Draws for epoch 1 when `per_epoch` (the first epoch trains on it), else once.
    pub fn new(
        split: TrainSplit,
        method: Resampling,
        per_epoch: bool,
        batch_size: usize,
        shuffle_seed: u64,
        resample_seed: u64,
        device: Device,
    ) -> Result<Self, EngineError> {
        let drawn = u32::from(per_epoch);
        let first = Self::draw(&split, &method, resample_seed, drawn)?;
        let inner = InMemoryLoader::new(
            &first.features,
            split.width,
            &first.targets,
            batch_size,
            shuffle_seed,
            device,
        );
        Ok(Self {
            split,
            method,
            per_epoch,
            resample_seed,
            inner,
            drawn,
        })
    }

    fn draw(
        split: &TrainSplit,
        method: &Resampling,
        seed: u64,
        epoch: u32,
    ) -> Result<Resampled, EngineError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(epoch) << 32));
        resample(
            &split.features,
            split.width,
            &split.targets,
            split.classes,
            method,
            &mut rng,
        )
        .map_err(|e| EngineError::Internal(format!("resampling failed: {e}")))
    }
}

impl BatchLoader for ResamplingLoader {
    fn samples(&self) -> usize {
        // The sizes per class are fixed by the method, so every draw has as many rows.
        self.inner.samples()
    }

    fn batch_size(&self) -> usize {
        self.inner.batch_size
    }

    fn epoch(&mut self, epoch: u32) -> Box<dyn Iterator<Item = Batch> + '_> {
        if self.per_epoch && epoch != self.drawn {
            match Self::draw(&self.split, &self.method, self.resample_seed, epoch) {
                Ok(r) => {
                    let InMemoryLoader {
                        batch_size,
                        seed,
                        device,
                        ..
                    } = self.inner;
                    self.inner = InMemoryLoader::new(
                        &r.features,
                        self.split.width,
                        &r.targets,
                        batch_size,
                        seed,
                        device,
                    );
                    self.drawn = epoch;
                }
                // Validated at submit; a failure here keeps the previous draw.
                Err(e) => {
                    tracing::error!(error = %e, "resampling failed; reusing the previous draw")
                }
            }
        }
        self.inner.epoch(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_once_per_epoch_with_a_partial_last_batch() {
        let feats: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let targets: Vec<usize> = (0..10).collect();
        let mut l = InMemoryLoader::new(&feats, 1, &targets, 4, 3, Device::Cpu);
        assert_eq!(l.batches_per_epoch(), 3);
        let batches: Vec<Batch> = l.epoch(1).collect();
        assert_eq!(
            batches
                .iter()
                .map(|b| b.targets.size()[0])
                .collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let mut seen: Vec<i64> = batches
            .iter()
            .flat_map(|b| Vec::<i64>::try_from(&b.targets).unwrap())
            .collect();
        let first_order = seen.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        // Features travel with their targets.
        for b in &batches {
            let x = Vec::<f32>::try_from(&b.features.flatten(0, -1)).unwrap();
            let y = Vec::<i64>::try_from(&b.targets).unwrap();
            assert!(x.iter().zip(&y).all(|(x, y)| *x as i64 == *y));
        }
        let second: Vec<i64> = l
            .epoch(2)
            .flat_map(|b| Vec::<i64>::try_from(&b.targets).unwrap())
            .collect();
        assert_ne!(first_order, second, "each epoch reshuffles");
    }
}
