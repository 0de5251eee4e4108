//! The loss trained on, and one training step's forward and backward pass.

use tch::{Device, Kind, Reduction, Tensor};

use crate::{Batch, EngineError, Network, Optimizer};
use gradstream_domain::{JobSpec, LossSpec};

/// The class weights as a tensor on `device`; `None` when unweighted (empty).
pub(crate) fn class_weight_tensor(weights: &[f64], device: Device) -> Option<Tensor> {
    (!weights.is_empty()).then(|| {
        Tensor::from_slice(weights)
            .to_kind(Kind::Float)
            .to_device(device)
    })
}

/// One step's forward pass (training mode), loss and backward pass, gradients zeroed
/// first; the logits and the loss, left on the device. The caller decides whether to step.
pub(crate) fn step_loss(
    model: &mut Network,
    opt: &mut Optimizer,
    batch: &Batch,
    weights: Option<&Tensor>,
    spec: &JobSpec,
) -> Result<(Tensor, Tensor), EngineError> {
    let logits = model.forward_t(&batch.features, true)?;
    let loss = training_loss(&logits, &batch.targets, weights, spec.loss)?;
    opt.zero_grad();
    loss.f_backward()?;
    Ok((logits, loss))
}

/// The loss trained on: class-weighted cross-entropy, or the softmax focal loss
/// `-w_y (1 - p_y)^gamma log p_y` reduced the same way (sum over the batch divided by the
/// sum of its rows' class weights), which is cross-entropy when gamma is 0.
pub(crate) fn training_loss(
    logits: &Tensor,
    targets: &Tensor,
    weights: Option<&Tensor>,
    loss: LossSpec,
) -> Result<Tensor, tch::TchError> {
    match loss {
        LossSpec::CrossEntropy => {
            logits.f_cross_entropy_loss(targets, weights, Reduction::Mean, -100, 0.0)
        }
        LossSpec::Focal { gamma } => {
            let log_p = logits
                .f_log_softmax(-1, Kind::Float)?
                .f_gather(1, &targets.f_unsqueeze(1)?, false)?
                .f_squeeze_dim(1)?;
            let focus = log_p
                .f_exp()?
                .f_neg()?
                .f_add_scalar(1.0)?
                .f_clamp_min(0.0)?
                .f_pow_tensor_scalar(gamma)?;
            let per_row = focus.f_mul(&log_p)?.f_neg()?;
            match weights {
                None => per_row.f_mean(Kind::Float),
                Some(w) => {
                    let w_y = w.f_index_select(0, targets)?;
                    per_row
                        .f_mul(&w_y)?
                        .f_sum(Kind::Float)?
                        .f_div(&w_y.f_sum(Kind::Float)?)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LossFn, Scores, metrics_of};

    #[test]
    fn focal_loss_matches_its_definition_and_is_cross_entropy_at_gamma_0() {
        let logits = Tensor::randn([40, 3], (Kind::Float, Device::Cpu)) * 2.0;
        let targets = Tensor::randint(3, [40], (Kind::Int64, Device::Cpu));
        let scores = Scores::from_tensors(&logits, &targets).unwrap();
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        for weights in [vec![], vec![0.5, 3.0, 1.0]] {
            let w =
                (!weights.is_empty()).then(|| Tensor::from_slice(&weights).to_kind(Kind::Float));
            let value = |loss| {
                training_loss(&logits, &targets, w.as_ref(), loss)
                    .unwrap()
                    .double_value(&[])
            };
            // gamma 0 is exactly cross-entropy.
            let ce = value(LossSpec::CrossEntropy);
            let focal0 = value(LossSpec::Focal { gamma: 0.0 });
            assert!((ce - focal0).abs() < 1e-6, "{ce} vs {focal0}");
            // gamma 2: libtorch's value equals the plain-Rust definition used for metrics.
            let focal = value(LossSpec::Focal { gamma: 2.0 });
            let reference = metrics_of(
                &scores,
                &LossFn::new(&weights, LossSpec::Focal { gamma: 2.0 }),
                &labels,
                false,
            )
            .loss;
            assert!((focal - reference).abs() < 1e-5, "{focal} vs {reference}");
            assert!(focal < ce, "focal loss down-weights rows: {focal} < {ce}");
        }
    }
}
