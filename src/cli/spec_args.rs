//! Command-line flags that describe a job, turned into a `JobSpec` request. The server
//! validates; this only translates.

use crate::transport::pb;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ActivationArg {
    Relu,
    Tanh,
    Sigmoid,
    LeakyRelu,
    Gelu,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OptimizerArg {
    Sgd,
    Adam,
    Adamw,
    Rmsprop,
    Adadelta,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SpecArgs {
    /// Job name shown in listings.
    #[arg(long, default_value = "")]
    pub name: String,
    /// CSV file, relative to the server's data directory (otherwise synthetic data is used).
    #[arg(long)]
    pub csv: Option<String>,
    /// An uploaded dataset's id (see `gradstream datasets upload`).
    #[arg(long, conflicts_with = "csv")]
    pub dataset_id: Option<String>,
    /// Header name of the CSV label column (default: the last column).
    #[arg(long, default_value = "")]
    pub label_column: String,
    /// Synthetic data: number of samples.
    #[arg(long, default_value_t = 2000)]
    pub samples: u32,
    /// Synthetic data: number of features.
    #[arg(long, default_value_t = 16)]
    pub features: u32,
    /// Synthetic data: number of classes.
    #[arg(long, default_value_t = 3)]
    pub classes: u32,
    /// Synthetic data: relative class frequencies, comma-separated (e.g. 0.9,0.1).
    #[arg(long, value_delimiter = ',')]
    pub class_ratios: Vec<f64>,
    /// Synthetic data: distance between class centres (larger is easier).
    #[arg(long)]
    pub separation: Option<f64>,
    /// Synthetic data: generator seed.
    #[arg(long, default_value_t = 0)]
    pub data_seed: u64,
    /// Hidden layer widths, comma-separated (e.g. 128,64).
    #[arg(long, value_delimiter = ',', default_value = "64")]
    pub hidden: Vec<u32>,
    #[arg(long, value_enum, default_value_t = ActivationArg::Relu)]
    pub activation: ActivationArg,
    /// Batch normalization after each hidden layer.
    #[arg(long)]
    pub batch_norm: bool,
    /// Dropout probability after each hidden activation.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    #[arg(long, default_value_t = 5)]
    pub epochs: u32,
    #[arg(long, default_value_t = 64)]
    pub batch_size: u32,
    /// Learning rate.
    #[arg(long = "lr", default_value_t = 0.001)]
    pub learning_rate: f64,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    pub optimizer: OptimizerArg,
    /// SGD/RMSprop momentum.
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f64,
    /// SGD Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// One weight per class, comma-separated, in class order.
    #[arg(long, value_delimiter = ',')]
    pub class_weights: Vec<f64>,
    /// Fraction held out for validation (default 0.2).
    #[arg(long)]
    pub validation_fraction: Option<f64>,
    /// Seed for split, shuffling, initial weights and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Idempotency key: submitting again with the same key returns the same job.
    #[arg(long, default_value = "")]
    pub request_id: String,
    /// Iterations between progress events (0: about 20 per epoch).
    #[arg(long, default_value_t = 0)]
    pub report_every: u32,
    /// The metric that picks the job's best-epoch model.
    #[arg(long, value_enum, default_value_t = SelectionArg::Loss)]
    pub best_by: SelectionArg,
    /// Where class weights come from (manual: --class-weights).
    #[arg(long, value_enum, default_value_t = WeightingArg::Manual)]
    pub class_weighting: WeightingArg,
    /// Beta of effective-number weighting, in [0, 1).
    #[arg(long)]
    pub beta: Option<f64>,
    /// Resampling of the training split.
    #[arg(long, value_enum, default_value_t = ResamplingArg::None)]
    pub resampling: ResamplingArg,
    /// Resampling target ratio in (0, 1] (1: balanced).
    #[arg(long)]
    pub resampling_ratio: Option<f64>,
    /// SMOTE neighbours (default 5).
    #[arg(long)]
    pub k_neighbors: Option<u32>,
    /// Draw a new resample every epoch instead of once.
    #[arg(long)]
    pub resample_per_epoch: bool,
    /// Train a balanced-bagging ensemble of this many members (0: one model).
    #[arg(long, default_value_t = 0)]
    pub bagging: u32,
    /// Training loss.
    #[arg(long, value_enum, default_value_t = LossArg::CrossEntropy)]
    pub loss: LossArg,
    /// Focal loss gamma (default 2).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Clip the gradients' total L2 norm to this.
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// Stop after this many epochs without improvement of --best-by.
    #[arg(long)]
    pub patience: Option<u32>,
    /// Smallest improvement that resets --patience.
    #[arg(long, default_value_t = 0.0)]
    pub min_delta: f64,
    /// Learning-rate schedule (PyTorch's defaults for the settings not given).
    #[arg(long, value_enum, default_value_t = ScheduleArg::Constant)]
    pub lr_schedule: ScheduleArg,
    /// step: epochs between decays.
    #[arg(long, default_value_t = 1)]
    pub step_size: u32,
    /// step, exponential: the decay factor; plateau: the reduction factor.
    #[arg(long)]
    pub lr_gamma: Option<f64>,
    /// cosine: epochs of linear warmup.
    #[arg(long, default_value_t = 0)]
    pub warmup_epochs: u32,
    /// Leave out the per-layer diagnostics.
    #[arg(long)]
    pub no_diagnostics: bool,
    /// A CNN: the feature columns as an image of this shape, CHANNELS,HEIGHT,WIDTH (with
    /// --torchscript: the shape the module's forward takes).
    #[arg(long, value_parser = parse_shape)]
    pub input_shape: Option<[u32; 3]>,
    /// Train an uploaded TorchScript model (`gradstream models upload`) instead of a
    /// built-in one; --hidden, --conv and the other layer flags do not apply.
    #[arg(long, value_name = "MODEL_ID")]
    pub torchscript: Option<String>,
    /// CNN convolution blocks, their channels (3x3, padding 1, --activation, batch norm with
    /// --batch-norm, 2x2 max pooling); the --hidden layers follow.
    #[arg(long, value_delimiter = ',')]
    pub conv: Vec<u32>,
    /// CNN: average each channel over the map instead of flattening it.
    #[arg(long)]
    pub global_avg_pool: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleArg {
    Constant,
    Step,
    Exponential,
    Cosine,
    OneCycle,
    Plateau,
}

/// `C,H,W`: three positive integers.
fn parse_shape(s: &str) -> Result<[u32; 3], String> {
    let dims: Vec<u32> = s
        .split(',')
        .map(|d| d.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("'{s}': {e}; give CHANNELS,HEIGHT,WIDTH, e.g. 1,8,8"))?;
    <[u32; 3]>::try_from(dims).map_err(|d| {
        format!(
            "'{s}' has {} numbers; give CHANNELS,HEIGHT,WIDTH, e.g. 1,8,8",
            d.len()
        )
    })
}

impl SpecArgs {
    /// An MLP, a CNN when --input-shape is given, or an uploaded TorchScript model.
    fn model(&self, activation: pb::Activation) -> pb::model::Kind {
        if let Some(id) = &self.torchscript {
            return pb::model::Kind::Torchscript(pb::TorchScriptModel {
                model_id: id.clone(),
                input_shape: self.input_shape.map_or_else(Vec::new, |s| s.to_vec()),
            });
        }
        let dense = pb::Mlp {
            hidden_layers: self.hidden.clone(),
            activation: activation as i32,
            batch_norm: self.batch_norm,
            dropout: self.dropout,
        };
        let Some([channels, height, width]) = self.input_shape else {
            return pb::model::Kind::Mlp(dense);
        };
        pb::model::Kind::Cnn(pb::Cnn {
            channels,
            height,
            width,
            blocks: self
                .conv
                .iter()
                .map(|&c| pb::ConvBlock {
                    channels: c,
                    kernel_size: 3,
                    padding: 1,
                    batch_norm: self.batch_norm,
                    activation: activation as i32,
                    pool: pb::PoolKind::Max as i32,
                    ..Default::default()
                })
                .collect(),
            global_average_pool: self.global_avg_pool,
            dense: Some(dense),
        })
    }

    fn lr_schedule(&self) -> Option<pb::LrSchedule> {
        use pb::lr_schedule::Kind;
        let gamma = self.lr_gamma.unwrap_or(0.1);
        let kind = match self.lr_schedule {
            ScheduleArg::Constant => return None,
            ScheduleArg::Step => Kind::Step(pb::StepSchedule {
                step_size: self.step_size,
                gamma,
            }),
            ScheduleArg::Exponential => Kind::Exponential(pb::ExponentialSchedule {
                gamma: self.lr_gamma.unwrap_or(0.9),
            }),
            ScheduleArg::Cosine => Kind::Cosine(pb::CosineSchedule {
                warmup_epochs: self.warmup_epochs,
                ..Default::default()
            }),
            ScheduleArg::OneCycle => Kind::OneCycle(pb::OneCycleSchedule::default()),
            ScheduleArg::Plateau => Kind::ReduceOnPlateau(pb::PlateauSchedule {
                factor: self.lr_gamma,
                ..Default::default()
            }),
        };
        Some(pb::LrSchedule { kind: Some(kind) })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightingArg {
    None,
    Manual,
    Balanced,
    EffectiveNumber,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResamplingArg {
    None,
    Oversample,
    Undersample,
    Smote,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LossArg {
    CrossEntropy,
    Focal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SelectionArg {
    Loss,
    Accuracy,
    MacroF1,
    RocAuc,
    AveragePrecision,
}

impl SpecArgs {
    pub fn to_request(&self) -> pb::SubmitJobRequest {
        let source = match (&self.csv, &self.dataset_id) {
            (_, Some(id)) => pb::dataset::Source::DatasetId(id.clone()),
            (Some(path), None) => pb::dataset::Source::Csv(pb::CsvDataset {
                path: path.clone(),
                label_column: self.label_column.clone(),
            }),
            (None, None) => pb::dataset::Source::Synthetic(pb::SyntheticDataset {
                samples: self.samples,
                features: self.features,
                classes: self.classes,
                class_ratios: self.class_ratios.clone(),
                separation: self.separation,
                seed: self.data_seed,
            }),
        };
        let activation = match self.activation {
            ActivationArg::Relu => pb::Activation::Relu,
            ActivationArg::Tanh => pb::Activation::Tanh,
            ActivationArg::Sigmoid => pb::Activation::Sigmoid,
            ActivationArg::LeakyRelu => pb::Activation::LeakyRelu,
            ActivationArg::Gelu => pb::Activation::Gelu,
        };
        let kind = match self.optimizer {
            OptimizerArg::Sgd => pb::OptimizerKind::Sgd,
            OptimizerArg::Adam => pb::OptimizerKind::Adam,
            OptimizerArg::Adamw => pb::OptimizerKind::Adamw,
            OptimizerArg::Rmsprop => pb::OptimizerKind::Rmsprop,
            OptimizerArg::Adadelta => pb::OptimizerKind::Adadelta,
        };
        pb::SubmitJobRequest {
            request_id: self.request_id.clone(),
            spec: Some(pb::JobSpec {
                name: self.name.clone(),
                dataset: Some(pb::Dataset {
                    source: Some(source),
                }),
                model: Some(pb::Model {
                    kind: Some(self.model(activation)),
                }),
                epochs: self.epochs,
                batch_size: self.batch_size,
                learning_rate: self.learning_rate,
                optimizer: Some(pb::Optimizer {
                    kind: kind as i32,
                    momentum: self.momentum,
                    nesterov: self.nesterov,
                    weight_decay: self.weight_decay,
                    ..Default::default()
                }),
                class_weights: self.class_weights.clone(),
                validation_fraction: self.validation_fraction,
                seed: self.seed,
                report_every: self.report_every,
                best_model_metric: match self.best_by {
                    SelectionArg::Loss => pb::ModelSelectionMetric::Loss,
                    SelectionArg::Accuracy => pb::ModelSelectionMetric::Accuracy,
                    SelectionArg::MacroF1 => pb::ModelSelectionMetric::MacroF1,
                    SelectionArg::RocAuc => pb::ModelSelectionMetric::RocAuc,
                    SelectionArg::AveragePrecision => pb::ModelSelectionMetric::AveragePrecision,
                } as i32,
                class_weighting: match self.class_weighting {
                    WeightingArg::None => pb::ClassWeighting::None,
                    WeightingArg::Manual => pb::ClassWeighting::Manual,
                    WeightingArg::Balanced => pb::ClassWeighting::Balanced,
                    WeightingArg::EffectiveNumber => pb::ClassWeighting::EffectiveNumber,
                } as i32,
                effective_number_beta: self.beta,
                resampling: Some(pb::Resampling {
                    method: match self.resampling {
                        ResamplingArg::None => pb::ResamplingMethod::None,
                        ResamplingArg::Oversample => pb::ResamplingMethod::RandomOversample,
                        ResamplingArg::Undersample => pb::ResamplingMethod::RandomUndersample,
                        ResamplingArg::Smote => pb::ResamplingMethod::Smote,
                    } as i32,
                    ratio: self.resampling_ratio,
                    k_neighbors: self.k_neighbors,
                    per_epoch: self.resample_per_epoch,
                }),
                ensemble: (self.bagging > 0).then_some(pb::Ensemble {
                    kind: pb::EnsembleKind::BalancedBagging as i32,
                    members: self.bagging,
                }),
                lr_schedule: self.lr_schedule(),
                layer_diagnostics: Some(!self.no_diagnostics),
                shuffle_buffer: None,
                gradient_clip_norm: self.clip_norm,
                early_stopping: self.patience.map(|patience| pb::EarlyStopping {
                    patience,
                    min_delta: self.min_delta,
                }),
                loss: Some(pb::Loss {
                    kind: match self.loss {
                        LossArg::CrossEntropy => pb::LossKind::CrossEntropy,
                        LossArg::Focal => pb::LossKind::Focal,
                    } as i32,
                    gamma: self.gamma,
                }),
            }),
        }
    }
}
