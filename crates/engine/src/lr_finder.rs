//! The learning-rate range test (Smith 2017, as popularised by fastai): train from scratch
//! with a learning rate that grows exponentially every iteration, watch the loss, stop when
//! it diverges, and suggest the rate where the loss fell fastest.

use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Device, nn};

use super::{BatchLoader, EngineError, Optimizer, Prepared, build_model, plain_loader, prepare};
use crate::loss::{class_weight_tensor, step_loss};
use gradstream_data::Dataset;
use gradstream_domain::{JobSpec, LrPoint, LrSuggestion, RangeTest};

/// The smoothed loss has diverged when it exceeds this many times its minimum.
const DIVERGENCE: f64 = 4.0;
const SMOOTHING: f64 = 0.98;

/// Runs the test on `spec`'s model, optimizer, loss and class weights over `data`'s
/// training split, reporting each point.
pub fn find_learning_rate(
    spec: &JobSpec,
    data: &Dataset,
    device: Device,
    test: RangeTest,
    on_point: &mut dyn FnMut(LrPoint),
    cancel: &AtomicBool,
) -> Result<LrSuggestion, EngineError> {
    let Prepared {
        train,
        class_weights,
        ..
    } = prepare(spec, data);
    let mut loader = plain_loader(spec, &train, device);
    let vs = nn::VarStore::new(device);
    let mut model = build_model(&vs, spec, data.width, data.labels.len(), None)?;
    let mut opt = Optimizer::new(&spec.optimizer, &vs, test.min_lr)?;
    let weights = class_weight_tensor(&class_weights, device);
    let n = test.iterations.max(2);
    let growth = (test.max_lr / test.min_lr).powf(1.0 / f64::from(n - 1));
    let mut points: Vec<LrPoint> = Vec::with_capacity(n as usize);
    let mut average = 0.0;
    let mut best = f64::INFINITY;
    let mut diverged = false;
    let mut epoch = 0;
    'outer: loop {
        epoch += 1;
        for batch in loader.epoch(epoch) {
            if cancel.load(Ordering::Relaxed) {
                return Err(EngineError::Cancelled);
            }
            let i = points.len() as u32;
            if i == n {
                break 'outer;
            }
            let lr = test.min_lr * growth.powi(i as i32);
            opt.set_learning_rate(lr);
            let (_, loss) = step_loss(&mut model, &mut opt, &batch, weights.as_ref(), spec)?;
            // A range test records every step's loss and stops at the first that is not
            // finite: it reads each one.
            let value = loss.f_double_value(&[])?;
            if !value.is_finite() {
                diverged = true;
                break 'outer;
            }
            opt.step()?;
            average = SMOOTHING * average + (1.0 - SMOOTHING) * value;
            let smoothed = average / (1.0 - SMOOTHING.powi(i as i32 + 1));
            let point = LrPoint {
                iteration: i + 1,
                learning_rate: lr,
                loss: value,
                smoothed_loss: smoothed,
            };
            points.push(point);
            on_point(point);
            best = best.min(smoothed);
            if i > 0 && smoothed > DIVERGENCE * best {
                diverged = true;
                break 'outer;
            }
        }
    }
    suggest(&points, diverged)
}

/// The steepest fall of the smoothed loss per decade of learning rate, before its minimum.
fn suggest(points: &[LrPoint], diverged: bool) -> Result<LrSuggestion, EngineError> {
    let lowest = points
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.smoothed_loss.total_cmp(&b.1.smoothed_loss))
        .ok_or_else(|| {
            EngineError::Internal("the range test stopped before its first iteration".into())
        })?;
    let (lowest_index, lowest) = (lowest.0, *lowest.1);
    let steepest = points[..=lowest_index]
        .windows(2)
        .map(|w| {
            let slope = (w[1].smoothed_loss - w[0].smoothed_loss)
                / (w[1].learning_rate.log10() - w[0].learning_rate.log10());
            (slope, w[1].learning_rate)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(lowest.learning_rate / 10.0, |(_, lr)| lr);
    Ok(LrSuggestion {
        suggested: steepest,
        min_loss: lowest.learning_rate,
        diverged,
        iterations: points.len() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(i: u32, lr: f64, loss: f64) -> LrPoint {
        LrPoint {
            iteration: i,
            learning_rate: lr,
            loss,
            smoothed_loss: loss,
        }
    }

    #[test]
    fn suggests_the_steepest_descent_before_the_minimum() {
        // Flat, then a steep fall between 1e-3 and 1e-2, a minimum at 1e-1, then a rise.
        let curve = [
            (1e-5, 2.3),
            (1e-4, 2.29),
            (1e-3, 2.2),
            (1e-2, 1.0),
            (1e-1, 0.8),
            (1.0, 5.0),
        ];
        let points: Vec<LrPoint> = curve
            .iter()
            .enumerate()
            .map(|(i, &(lr, l))| point(i as u32 + 1, lr, l))
            .collect();
        let s = suggest(&points, true).unwrap();
        assert_eq!(s.suggested, 1e-2);
        assert_eq!(s.min_loss, 1e-1);
        assert!(s.diverged);
    }
}
