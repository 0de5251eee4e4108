//! Job specs and their parts, both ways. `TryFrom<pb::…>` resolves the defaults the proto
//! documents and rejects enum values it does not know, naming the field (`spec.model`,
//! `spec.optimizer.kind`); `From<&…>` writes every setting out, defaults included.

use super::{
    DEFAULT_BETA, DEFAULT_FOCAL_GAMMA, DEFAULT_K_NEIGHBORS, DEFAULT_SEPARATION,
    DEFAULT_VALIDATION_FRACTION, enum_field,
};
use crate::domain::{
    Activation, ArrayFormat, ArraysSpec, ClassWeighting, CnnSpec, ConvBlock, DatasetSpec,
    EarlyStopping, EnsembleSpec, JobSpec, LossSpec, LrSchedule, MlpSpec, ModelSelection, ModelSpec,
    OptimizerSpec, Pool, ResamplingMethod, ResamplingSpec, ScriptSpec, SpecError, SyntheticSpec,
};
use crate::transport::pb;

/// A request's spec, which is required.
pub fn job_spec(spec: Option<pb::JobSpec>) -> Result<JobSpec, SpecError> {
    spec.ok_or_else(|| SpecError::new("spec", "is required: describe the job to run"))?
        .try_into()
}

// ---- requests → domain ----

impl TryFrom<pb::JobSpec> for JobSpec {
    type Error = SpecError;

    /// Fields are converted, and so checked, in this order: the first bad one is reported.
    fn try_from(s: pb::JobSpec) -> Result<Self, SpecError> {
        Ok(JobSpec {
            name: s.name,
            dataset: s.dataset.unwrap_or_default().try_into()?,
            model: s.model.unwrap_or_default().try_into()?,
            epochs: s.epochs,
            batch_size: s.batch_size,
            learning_rate: s.learning_rate,
            optimizer: match s.optimizer {
                Some(o) => o.try_into()?,
                None => OptimizerSpec::adam_default(),
            },
            class_weights: s.class_weights,
            validation_fraction: s.validation_fraction.unwrap_or(DEFAULT_VALIDATION_FRACTION),
            seed: s.seed,
            report_every: s.report_every,
            best_model_metric: model_selection(s.best_model_metric)?,
            class_weighting: class_weighting(s.class_weighting, s.effective_number_beta)?,
            resampling: resampling(s.resampling)?,
            ensemble: ensemble(s.ensemble)?,
            loss: match s.loss {
                Some(l) => l.try_into()?,
                None => LossSpec::CrossEntropy,
            },
            lr_schedule: lr_schedule(s.lr_schedule, s.best_model_metric)?,
            layer_diagnostics: s.layer_diagnostics.unwrap_or(true),
            shuffle_buffer: s.shuffle_buffer,
            gradient_clip_norm: s.gradient_clip_norm,
            early_stopping: s.early_stopping.map(EarlyStopping::from),
        })
    }
}

impl From<pb::EarlyStopping> for EarlyStopping {
    fn from(e: pb::EarlyStopping) -> Self {
        EarlyStopping {
            patience: e.patience,
            min_delta: e.min_delta,
        }
    }
}

/// `metric` is the spec's `best_model_metric`: a plateau schedule watches it.
fn lr_schedule(s: Option<pb::LrSchedule>, metric: i32) -> Result<LrSchedule, SpecError> {
    use pb::lr_schedule::Kind;
    Ok(match s.and_then(|s| s.kind) {
        None => LrSchedule::Constant,
        Some(Kind::Step(s)) => LrSchedule::Step {
            step_size: s.step_size,
            gamma: s.gamma,
        },
        Some(Kind::Exponential(s)) => LrSchedule::Exponential { gamma: s.gamma },
        Some(Kind::Cosine(s)) => LrSchedule::Cosine {
            warmup_epochs: s.warmup_epochs,
            warmup_start_factor: s.warmup_start_factor.unwrap_or(1.0 / 3.0),
            eta_min: s.eta_min,
        },
        Some(Kind::OneCycle(s)) => LrSchedule::OneCycle {
            pct_start: s.pct_start.unwrap_or(0.3),
            div_factor: s.div_factor.unwrap_or(25.0),
            final_div_factor: s.final_div_factor.unwrap_or(1e4),
        },
        Some(Kind::ReduceOnPlateau(s)) => LrSchedule::ReduceOnPlateau {
            maximize: model_selection(metric)? != ModelSelection::Loss,
            factor: s.factor.unwrap_or(0.1),
            patience: s.patience.unwrap_or(10),
            threshold: s.threshold.unwrap_or(1e-4),
            cooldown: s.cooldown,
            min_lr: s.min_lr,
        },
    })
}

/// `beta` is the spec's `effective_number_beta`.
fn class_weighting(v: i32, beta: Option<f64>) -> Result<ClassWeighting, SpecError> {
    use pb::ClassWeighting as W;
    match W::try_from(v) {
        Ok(W::Unspecified | W::Manual) => Ok(ClassWeighting::Manual),
        Ok(W::None) => Ok(ClassWeighting::None),
        Ok(W::Balanced) => Ok(ClassWeighting::Balanced),
        Ok(W::EffectiveNumber) => Ok(ClassWeighting::EffectiveNumber {
            beta: beta.unwrap_or(DEFAULT_BETA),
        }),
        Err(_) => Err(SpecError::new(
            "spec.class_weighting",
            format!("{v} is not a ClassWeighting; use NONE, MANUAL, BALANCED or EFFECTIVE_NUMBER"),
        )),
    }
}

/// Unset or method NONE: no resampling.
fn resampling(r: Option<pb::Resampling>) -> Result<Option<ResamplingSpec>, SpecError> {
    use pb::ResamplingMethod as M;
    let Some(r) = r else { return Ok(None) };
    let method = match M::try_from(r.method) {
        Ok(M::Unspecified | M::None) => return Ok(None),
        Ok(M::RandomOversample) => ResamplingMethod::RandomOversample,
        Ok(M::RandomUndersample) => ResamplingMethod::RandomUndersample,
        Ok(M::Smote) => ResamplingMethod::Smote {
            k_neighbors: r.k_neighbors.unwrap_or(DEFAULT_K_NEIGHBORS),
        },
        Err(_) => {
            return Err(SpecError::new(
                "spec.resampling.method",
                format!(
                    "{} is not a ResamplingMethod; use NONE, RANDOM_OVERSAMPLE, RANDOM_UNDERSAMPLE or SMOTE",
                    r.method
                ),
            ));
        }
    };
    Ok(Some(ResamplingSpec {
        method,
        ratio: r.ratio.unwrap_or(1.0),
        per_epoch: r.per_epoch,
    }))
}

/// Unset or kind NONE: one model.
fn ensemble(e: Option<pb::Ensemble>) -> Result<Option<EnsembleSpec>, SpecError> {
    use pb::EnsembleKind as K;
    let Some(e) = e else { return Ok(None) };
    match K::try_from(e.kind) {
        Ok(K::Unspecified | K::None) => Ok(None),
        Ok(K::BalancedBagging) => Ok(Some(EnsembleSpec::BalancedBagging { members: e.members })),
        Err(_) => Err(SpecError::new(
            "spec.ensemble.kind",
            format!(
                "{} is not an EnsembleKind; use NONE or BALANCED_BAGGING",
                e.kind
            ),
        )),
    }
}

impl TryFrom<pb::Loss> for LossSpec {
    type Error = SpecError;

    fn try_from(l: pb::Loss) -> Result<Self, SpecError> {
        use pb::LossKind as K;
        match K::try_from(l.kind) {
            Ok(K::Unspecified | K::CrossEntropy) => Ok(LossSpec::CrossEntropy),
            Ok(K::Focal) => Ok(LossSpec::Focal {
                gamma: l.gamma.unwrap_or(DEFAULT_FOCAL_GAMMA),
            }),
            Err(_) => Err(SpecError::new(
                "spec.loss.kind",
                format!("{} is not a LossKind; use CROSS_ENTROPY or FOCAL", l.kind),
            )),
        }
    }
}

/// Unspecified is the proto's default, LOSS.
impl From<pb::ModelSelectionMetric> for ModelSelection {
    fn from(m: pb::ModelSelectionMetric) -> Self {
        use pb::ModelSelectionMetric as M;
        match m {
            M::Unspecified | M::Loss => ModelSelection::Loss,
            M::Accuracy => ModelSelection::Accuracy,
            M::MacroF1 => ModelSelection::MacroF1,
            M::RocAuc => ModelSelection::RocAuc,
            M::AveragePrecision => ModelSelection::AveragePrecision,
        }
    }
}

fn model_selection(v: i32) -> Result<ModelSelection, SpecError> {
    enum_field::<pb::ModelSelectionMetric, _>(v, "spec.best_model_metric", |v| {
        format!(
            "{v} is not a ModelSelectionMetric; use LOSS, ACCURACY, MACRO_F1, ROC_AUC or AVERAGE_PRECISION"
        )
    })
}

/// An empty `label_column` means the last column.
impl From<pb::CsvDataset> for DatasetSpec {
    fn from(c: pb::CsvDataset) -> Self {
        DatasetSpec::Csv {
            path: c.path,
            label_column: (!c.label_column.is_empty()).then_some(c.label_column),
        }
    }
}

impl From<pb::SyntheticDataset> for SyntheticSpec {
    fn from(s: pb::SyntheticDataset) -> Self {
        SyntheticSpec {
            samples: u64::from(s.samples),
            features: s.features,
            classes: s.classes,
            class_ratios: s.class_ratios,
            separation: s.separation.unwrap_or(DEFAULT_SEPARATION),
            seed: s.seed,
        }
    }
}

/// A dataset without a source is an error: the spec's dataset is required.
impl TryFrom<pb::Dataset> for DatasetSpec {
    type Error = SpecError;

    fn try_from(d: pb::Dataset) -> Result<Self, SpecError> {
        use pb::dataset::Source;
        match d.source {
            Some(Source::Csv(c)) => Ok(c.into()),
            Some(Source::Synthetic(s)) => Ok(DatasetSpec::Synthetic(s.into())),
            Some(Source::DatasetId(id)) => Ok(DatasetSpec::Uploaded { id }),
            Some(Source::Arrays(a)) => Ok(DatasetSpec::Arrays(a.try_into()?)),
            None => Err(SpecError::new(
                "spec.dataset",
                "is required: set dataset.csv or dataset.arrays (files under the server's data directory), dataset.dataset_id (an uploaded dataset) or dataset.synthetic",
            )),
        }
    }
}

/// The format is required: the files do not say which reader to use.
impl TryFrom<pb::ArrayDataset> for ArraysSpec {
    type Error = SpecError;

    fn try_from(a: pb::ArrayDataset) -> Result<Self, SpecError> {
        use pb::ArrayFormat as F;
        let format = match F::try_from(a.format) {
            Ok(F::Npy) => ArrayFormat::Npy,
            Ok(F::Npz) => ArrayFormat::Npz,
            Ok(F::Idx) => ArrayFormat::Idx,
            Ok(F::Unspecified) | Err(_) => {
                return Err(SpecError::new(
                    "spec.dataset.arrays.format",
                    format!(
                        "{} is not an array format; use ARRAY_FORMAT_NPY, ARRAY_FORMAT_NPZ or ARRAY_FORMAT_IDX",
                        a.format
                    ),
                ));
            }
        };
        Ok(ArraysSpec {
            format,
            features_path: a.features_path,
            labels_path: a.labels_path,
            features_array: a.features_array,
            labels_array: a.labels_array,
            stored: None,
            streamed: false,
        })
    }
}

/// A model without a kind is an error: the spec's model is required.
impl TryFrom<pb::Model> for ModelSpec {
    type Error = SpecError;

    fn try_from(m: pb::Model) -> Result<Self, SpecError> {
        match m.kind {
            Some(pb::model::Kind::Mlp(mlp)) => Ok(ModelSpec::Mlp(mlp.try_into()?)),
            Some(pb::model::Kind::Torchscript(t)) => Ok(ModelSpec::TorchScript(t.try_into()?)),
            Some(pb::model::Kind::Cnn(c)) => Ok(ModelSpec::Cnn(c.try_into()?)),
            None => Err(SpecError::new(
                "spec.model",
                "is required: set model.mlp (for example hidden_layers [64])",
            )),
        }
    }
}

impl TryFrom<pb::Mlp> for MlpSpec {
    type Error = SpecError;

    fn try_from(mlp: pb::Mlp) -> Result<Self, SpecError> {
        Ok(MlpSpec {
            hidden_layers: mlp.hidden_layers,
            activation: activation(mlp.activation)?,
            batch_norm: mlp.batch_norm,
            dropout: mlp.dropout,
        })
    }
}

/// What the server derives from the uploaded model (its file, parameter count and batch
/// needs) is left empty: the job manager fills it in.
impl TryFrom<pb::TorchScriptModel> for ScriptSpec {
    type Error = SpecError;

    fn try_from(t: pb::TorchScriptModel) -> Result<Self, SpecError> {
        Ok(ScriptSpec {
            model_id: t.model_id,
            input_shape: match t.input_shape[..] {
                [] => None,
                [c, h, w] => Some([c, h, w]),
                _ => {
                    return Err(SpecError::new(
                        "spec.model.torchscript.input_shape",
                        format!(
                            "has {} values; give none (rows as [batch, features]) or three: channels, height, width",
                            t.input_shape.len()
                        ),
                    ));
                }
            },
            file: Default::default(),
            parameters: 0,
            needs_batch_of_two: false,
        })
    }
}

impl TryFrom<pb::Cnn> for CnnSpec {
    type Error = SpecError;

    fn try_from(c: pb::Cnn) -> Result<Self, SpecError> {
        Ok(CnnSpec {
            input: [c.channels, c.height, c.width],
            blocks: c
                .blocks
                .into_iter()
                .map(ConvBlock::try_from)
                .collect::<Result<_, SpecError>>()?,
            global_average_pool: c.global_average_pool,
            dense: c.dense.unwrap_or_default().try_into()?,
        })
    }
}

/// An unknown pool kind means no pooling.
impl TryFrom<pb::ConvBlock> for ConvBlock {
    type Error = SpecError;

    fn try_from(b: pb::ConvBlock) -> Result<Self, SpecError> {
        let size = b.pool_size.unwrap_or(2);
        Ok(ConvBlock {
            channels: b.channels,
            kernel: b.kernel_size,
            stride: b.stride.unwrap_or(1),
            padding: b.padding,
            batch_norm: b.batch_norm,
            activation: activation(b.activation)?,
            pool: match pb::PoolKind::try_from(b.pool) {
                Ok(pb::PoolKind::Max) => Pool::Max(size),
                Ok(pb::PoolKind::Avg) => Pool::Avg(size),
                _ => Pool::None,
            },
        })
    }
}

/// Unspecified is the proto's default, RELU.
impl From<pb::Activation> for Activation {
    fn from(a: pb::Activation) -> Self {
        use pb::Activation as A;
        match a {
            A::Unspecified | A::Relu => Activation::Relu,
            A::Tanh => Activation::Tanh,
            A::Sigmoid => Activation::Sigmoid,
            A::LeakyRelu => Activation::LeakyRelu,
            A::Gelu => Activation::Gelu,
        }
    }
}

/// Every activation (an MLP's, a CNN block's or its dense head's) is reported as
/// `spec.model.mlp.activation`.
fn activation(v: i32) -> Result<Activation, SpecError> {
    enum_field::<pb::Activation, _>(v, "spec.model.mlp.activation", |v| {
        format!("{v} is not a known activation; use RELU, TANH, SIGMOID, LEAKY_RELU or GELU")
    })
}

/// Unset settings take PyTorch's defaults for the chosen optimizer; kind unspecified is Adam.
impl TryFrom<pb::Optimizer> for OptimizerSpec {
    type Error = SpecError;

    fn try_from(o: pb::Optimizer) -> Result<Self, SpecError> {
        use pb::OptimizerKind as K;
        let wd = o.weight_decay.unwrap_or(0.0);
        Ok(match K::try_from(o.kind) {
            Ok(k @ (K::Unspecified | K::Adam | K::Adamw)) => {
                let decoupled = k == K::Adamw;
                OptimizerSpec::Adam {
                    beta1: o.beta1.unwrap_or(0.9),
                    beta2: o.beta2.unwrap_or(0.999),
                    eps: o.eps.unwrap_or(1e-8),
                    // PyTorch's AdamW defaults to 0.01, Adam to 0.
                    weight_decay: o.weight_decay.unwrap_or(if decoupled { 0.01 } else { 0.0 }),
                    decoupled,
                }
            }
            Ok(K::Sgd) => OptimizerSpec::Sgd {
                momentum: o.momentum,
                nesterov: o.nesterov,
                weight_decay: wd,
            },
            Ok(K::Rmsprop) => OptimizerSpec::RmsProp {
                alpha: o.rho.unwrap_or(0.99),
                eps: o.eps.unwrap_or(1e-8),
                momentum: o.momentum,
                weight_decay: wd,
            },
            Ok(K::Adadelta) => OptimizerSpec::AdaDelta {
                rho: o.rho.unwrap_or(0.9),
                eps: o.eps.unwrap_or(1e-6),
                weight_decay: wd,
            },
            Err(_) => {
                return Err(SpecError::new(
                    "spec.optimizer.kind",
                    format!(
                        "{} is not a known optimizer; use SGD, ADAM, ADAMW, RMSPROP or ADADELTA",
                        o.kind
                    ),
                ));
            }
        })
    }
}

// ---- domain → responses ----

/// Every setting is written out, defaults included, so a client sees what the job ran with.
impl From<&JobSpec> for pb::JobSpec {
    fn from(s: &JobSpec) -> Self {
        pb::JobSpec {
            name: s.name.clone(),
            dataset: Some((&s.dataset).into()),
            model: Some((&s.model).into()),
            epochs: s.epochs,
            batch_size: s.batch_size,
            learning_rate: s.learning_rate,
            optimizer: Some((&s.optimizer).into()),
            class_weights: s.class_weights.clone(),
            validation_fraction: Some(s.validation_fraction),
            seed: s.seed,
            report_every: s.report_every,
            best_model_metric: pb::ModelSelectionMetric::from(s.best_model_metric) as i32,
            class_weighting: pb::ClassWeighting::from(&s.class_weighting) as i32,
            effective_number_beta: match s.class_weighting {
                ClassWeighting::EffectiveNumber { beta } => Some(beta),
                _ => None,
            },
            resampling: s.resampling.as_ref().map(pb::Resampling::from),
            ensemble: s.ensemble.as_ref().map(pb::Ensemble::from),
            lr_schedule: lr_schedule_to_pb(s.lr_schedule),
            layer_diagnostics: Some(s.layer_diagnostics),
            shuffle_buffer: s.shuffle_buffer,
            gradient_clip_norm: s.gradient_clip_norm,
            early_stopping: s.early_stopping.as_ref().map(pb::EarlyStopping::from),
            loss: Some((&s.loss).into()),
        }
    }
}

impl From<&EarlyStopping> for pb::EarlyStopping {
    fn from(e: &EarlyStopping) -> Self {
        pb::EarlyStopping {
            patience: e.patience,
            min_delta: e.min_delta,
        }
    }
}

impl From<&DatasetSpec> for pb::Dataset {
    fn from(d: &DatasetSpec) -> Self {
        use pb::dataset::Source;
        let source = match d {
            DatasetSpec::Csv { path, label_column } => Source::Csv(pb::CsvDataset {
                path: path.clone(),
                label_column: label_column.clone().unwrap_or_default(),
            }),
            DatasetSpec::Uploaded { id } => Source::DatasetId(id.clone()),
            DatasetSpec::Arrays(a) => Source::Arrays(pb::ArrayDataset {
                format: match a.format {
                    ArrayFormat::Npy => pb::ArrayFormat::Npy,
                    ArrayFormat::Npz => pb::ArrayFormat::Npz,
                    ArrayFormat::Idx => pb::ArrayFormat::Idx,
                } as i32,
                features_path: a.features_path.clone(),
                labels_path: a.labels_path.clone(),
                features_array: a.features_array.clone(),
                labels_array: a.labels_array.clone(),
                stored: a.stored.clone().unwrap_or_default(),
            }),
            DatasetSpec::Synthetic(x) => Source::Synthetic(pb::SyntheticDataset {
                samples: x.samples as u32,
                features: x.features,
                classes: x.classes,
                class_ratios: x.class_ratios.clone(),
                separation: Some(x.separation),
                seed: x.seed,
            }),
        };
        pb::Dataset {
            source: Some(source),
        }
    }
}

/// A TorchScript model as the client asked for it: what the server derived stays out.
impl From<&ModelSpec> for pb::Model {
    fn from(m: &ModelSpec) -> Self {
        use pb::model::Kind;
        let kind = match m {
            ModelSpec::Mlp(m) => Kind::Mlp(m.into()),
            ModelSpec::TorchScript(t) => Kind::Torchscript(pb::TorchScriptModel {
                model_id: t.model_id.clone(),
                input_shape: t.input_shape.map_or_else(Vec::new, |s| s.to_vec()),
            }),
            ModelSpec::Cnn(c) => Kind::Cnn(pb::Cnn {
                channels: c.input[0],
                height: c.input[1],
                width: c.input[2],
                blocks: c.blocks.iter().map(pb::ConvBlock::from).collect(),
                global_average_pool: c.global_average_pool,
                dense: Some((&c.dense).into()),
            }),
        };
        pb::Model { kind: Some(kind) }
    }
}

impl From<&MlpSpec> for pb::Mlp {
    fn from(m: &MlpSpec) -> Self {
        pb::Mlp {
            hidden_layers: m.hidden_layers.clone(),
            activation: pb::Activation::from(m.activation) as i32,
            batch_norm: m.batch_norm,
            dropout: m.dropout,
        }
    }
}

impl From<&ConvBlock> for pb::ConvBlock {
    fn from(b: &ConvBlock) -> Self {
        let (pool, size) = match b.pool {
            Pool::None => (pb::PoolKind::None, None),
            Pool::Max(n) => (pb::PoolKind::Max, Some(n)),
            Pool::Avg(n) => (pb::PoolKind::Avg, Some(n)),
        };
        pb::ConvBlock {
            channels: b.channels,
            kernel_size: b.kernel,
            stride: Some(b.stride),
            padding: b.padding,
            batch_norm: b.batch_norm,
            activation: pb::Activation::from(b.activation) as i32,
            pool: pool as i32,
            pool_size: size,
        }
    }
}

impl From<Activation> for pb::Activation {
    fn from(a: Activation) -> Self {
        match a {
            Activation::Relu => pb::Activation::Relu,
            Activation::Tanh => pb::Activation::Tanh,
            Activation::Sigmoid => pb::Activation::Sigmoid,
            Activation::LeakyRelu => pb::Activation::LeakyRelu,
            Activation::Gelu => pb::Activation::Gelu,
        }
    }
}

impl From<ModelSelection> for pb::ModelSelectionMetric {
    fn from(m: ModelSelection) -> Self {
        use pb::ModelSelectionMetric as M;
        match m {
            ModelSelection::Loss => M::Loss,
            ModelSelection::Accuracy => M::Accuracy,
            ModelSelection::MacroF1 => M::MacroF1,
            ModelSelection::RocAuc => M::RocAuc,
            ModelSelection::AveragePrecision => M::AveragePrecision,
        }
    }
}

/// The kind only: EFFECTIVE_NUMBER's beta is a field of the spec beside it.
impl From<&ClassWeighting> for pb::ClassWeighting {
    fn from(w: &ClassWeighting) -> Self {
        match w {
            ClassWeighting::None => pb::ClassWeighting::None,
            ClassWeighting::Manual => pb::ClassWeighting::Manual,
            ClassWeighting::Balanced => pb::ClassWeighting::Balanced,
            ClassWeighting::EffectiveNumber { .. } => pb::ClassWeighting::EffectiveNumber,
        }
    }
}

impl From<&ResamplingSpec> for pb::Resampling {
    fn from(r: &ResamplingSpec) -> Self {
        use pb::ResamplingMethod as M;
        let (method, k_neighbors) = match r.method {
            ResamplingMethod::RandomOversample => (M::RandomOversample, None),
            ResamplingMethod::RandomUndersample => (M::RandomUndersample, None),
            ResamplingMethod::Smote { k_neighbors } => (M::Smote, Some(k_neighbors)),
        };
        pb::Resampling {
            method: method as i32,
            ratio: Some(r.ratio),
            k_neighbors,
            per_epoch: r.per_epoch,
        }
    }
}

impl From<&EnsembleSpec> for pb::Ensemble {
    fn from(e: &EnsembleSpec) -> Self {
        pb::Ensemble {
            kind: pb::EnsembleKind::BalancedBagging as i32,
            members: e.members(),
        }
    }
}

impl From<&LossSpec> for pb::Loss {
    fn from(l: &LossSpec) -> Self {
        let (kind, gamma) = match *l {
            LossSpec::CrossEntropy => (pb::LossKind::CrossEntropy, None),
            LossSpec::Focal { gamma } => (pb::LossKind::Focal, Some(gamma)),
        };
        pb::Loss {
            kind: kind as i32,
            gamma,
        }
    }
}

/// A constant rate is the unset schedule. A plateau schedule's direction is not written:
/// it follows the spec's `best_model_metric`.
fn lr_schedule_to_pb(s: LrSchedule) -> Option<pb::LrSchedule> {
    use pb::lr_schedule::Kind;
    let kind = match s {
        LrSchedule::Constant => return None,
        LrSchedule::Step { step_size, gamma } => Kind::Step(pb::StepSchedule { step_size, gamma }),
        LrSchedule::Exponential { gamma } => Kind::Exponential(pb::ExponentialSchedule { gamma }),
        LrSchedule::Cosine {
            warmup_epochs,
            warmup_start_factor,
            eta_min,
        } => Kind::Cosine(pb::CosineSchedule {
            warmup_epochs,
            warmup_start_factor: Some(warmup_start_factor),
            eta_min,
        }),
        LrSchedule::OneCycle {
            pct_start,
            div_factor,
            final_div_factor,
        } => Kind::OneCycle(pb::OneCycleSchedule {
            pct_start: Some(pct_start),
            div_factor: Some(div_factor),
            final_div_factor: Some(final_div_factor),
        }),
        LrSchedule::ReduceOnPlateau {
            factor,
            patience,
            threshold,
            cooldown,
            min_lr,
            ..
        } => Kind::ReduceOnPlateau(pb::PlateauSchedule {
            factor: Some(factor),
            patience: Some(patience),
            threshold: Some(threshold),
            cooldown,
            min_lr,
        }),
    };
    Some(pb::LrSchedule { kind: Some(kind) })
}

/// The optimizer's own settings, every one written out; the others stay unset.
impl From<&OptimizerSpec> for pb::Optimizer {
    fn from(o: &OptimizerSpec) -> Self {
        use pb::OptimizerKind as K;
        let base = pb::Optimizer::default();
        match *o {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => pb::Optimizer {
                kind: K::Sgd as i32,
                momentum,
                nesterov,
                weight_decay: Some(weight_decay),
                ..base
            },
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
            } => pb::Optimizer {
                kind: if decoupled { K::Adamw } else { K::Adam } as i32,
                beta1: Some(beta1),
                beta2: Some(beta2),
                eps: Some(eps),
                weight_decay: Some(weight_decay),
                ..base
            },
            OptimizerSpec::RmsProp {
                alpha,
                eps,
                momentum,
                weight_decay,
            } => pb::Optimizer {
                kind: K::Rmsprop as i32,
                rho: Some(alpha),
                eps: Some(eps),
                momentum,
                weight_decay: Some(weight_decay),
                ..base
            },
            OptimizerSpec::AdaDelta {
                rho,
                eps,
                weight_decay,
            } => pb::Optimizer {
                kind: K::Adadelta as i32,
                rho: Some(rho),
                eps: Some(eps),
                weight_decay: Some(weight_decay),
                ..base
            },
        }
    }
}
