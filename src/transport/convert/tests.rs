//! Round trip of job specs: domain → pb → wire → pb → domain gives the spec back.

use std::collections::BTreeSet;

use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::job_spec;
use crate::domain::{
    Activation, ArrayFormat, ArraysSpec, ClassWeighting, CnnSpec, ConvBlock, DatasetSpec,
    EarlyStopping, EnsembleSpec, JobSpec, LossSpec, LrSchedule, MlpSpec, ModelSelection, ModelSpec,
    OptimizerSpec, Pool, ResamplingMethod, ResamplingSpec, ScriptSpec, SyntheticSpec,
};
use crate::transport::pb;

const CASES: usize = 2000;

/// Random specs, recording which variant of each enum (and which optional field, set or
/// unset) each one used, so the test can check that every one came up.
struct Gen {
    rng: ChaCha8Rng,
    seen: BTreeSet<String>,
}

impl Gen {
    fn saw(&mut self, what: &str) {
        self.seen.insert(what.to_owned());
    }

    /// A finite number: zero, a small fraction or a wide-ranging magnitude, either sign.
    fn num(&mut self) -> f64 {
        match self.rng.random_range(0..4) {
            0 => 0.0,
            1 => self.rng.random::<f64>(),
            2 => self.rng.random_range(-1e6..1e6),
            _ => self.rng.random::<f64>() * 10f64.powi(self.rng.random_range(-300..300)),
        }
    }

    fn small(&mut self) -> u32 {
        self.rng.random_range(0..100)
    }

    fn text(&mut self) -> String {
        let n = self.rng.random_range(0..12);
        (0..n)
            .map(|_| match self.rng.random_range(0..4) {
                0 => 'é',
                1 => '/',
                _ => self.rng.random_range('a'..='z'),
            })
            .collect()
    }

    fn non_empty_text(&mut self) -> String {
        format!("c{}", self.text())
    }

    fn option<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.rng.random_bool(0.5) {
            self.saw(name);
            Some(f(self))
        } else {
            self.saw(&unset(name));
            None
        }
    }

    fn nums(&mut self) -> Vec<f64> {
        let n = self.rng.random_range(0..5);
        (0..n).map(|_| self.num()).collect()
    }

    fn spec(&mut self) -> JobSpec {
        let best_model_metric = self.selection();
        JobSpec {
            name: self.text(),
            dataset: self.dataset(),
            model: self.model(),
            epochs: self.rng.random(),
            batch_size: self.rng.random(),
            learning_rate: self.num(),
            optimizer: self.optimizer(),
            class_weights: self.nums(),
            validation_fraction: self.num(),
            seed: self.rng.random(),
            report_every: self.rng.random(),
            best_model_metric,
            class_weighting: self.class_weighting(),
            resampling: self.option("resampling", Self::resampling),
            ensemble: self.option("ensemble", |g| EnsembleSpec::BalancedBagging {
                members: g.rng.random(),
            }),
            loss: self.loss(),
            gradient_clip_norm: self.option("gradient_clip_norm", Self::num),
            early_stopping: self.option("early_stopping", |g| EarlyStopping {
                patience: g.rng.random(),
                min_delta: g.num(),
            }),
            lr_schedule: self.schedule(best_model_metric),
            layer_diagnostics: self.rng.random(),
            shuffle_buffer: self.option("shuffle_buffer", |g| g.rng.random()),
        }
    }

    fn dataset(&mut self) -> DatasetSpec {
        match self.rng.random_range(0..4) {
            3 => {
                self.saw("dataset arrays");
                DatasetSpec::Arrays(ArraysSpec {
                    format: [ArrayFormat::Npy, ArrayFormat::Npz, ArrayFormat::Idx]
                        [self.rng.random_range(0..3)],
                    features_path: self.text(),
                    labels_path: self.text(),
                    features_array: self.text(),
                    labels_array: self.text(),
                    // Filled by the server, never sent by a client.
                    stored: None,
                    streamed: false,
                })
            }
            0 => {
                self.saw("dataset csv");
                DatasetSpec::Csv {
                    path: self.text(),
                    // An empty column name is how the proto says "unset".
                    label_column: self.option("csv label_column", Self::non_empty_text),
                }
            }
            1 => {
                self.saw("dataset synthetic");
                DatasetSpec::Synthetic(SyntheticSpec {
                    // The proto carries a u32.
                    samples: u64::from(self.rng.random::<u32>()),
                    features: self.rng.random(),
                    classes: self.rng.random(),
                    class_ratios: self.nums(),
                    separation: self.num(),
                    seed: self.rng.random(),
                })
            }
            _ => {
                self.saw("dataset uploaded");
                DatasetSpec::Uploaded { id: self.text() }
            }
        }
    }

    /// One of `choices`, recorded under its name.
    fn pick<T: Clone>(&mut self, choices: &[(T, &str)]) -> T {
        let (value, name) = &choices[self.rng.random_range(0..choices.len())];
        self.saw(name);
        value.clone()
    }

    fn activation(&mut self) -> Activation {
        self.pick(&[
            (Activation::Relu, "relu"),
            (Activation::Tanh, "tanh"),
            (Activation::Sigmoid, "sigmoid"),
            (Activation::LeakyRelu, "leaky relu"),
            (Activation::Gelu, "gelu"),
        ])
    }

    fn mlp(&mut self) -> MlpSpec {
        let n = self.rng.random_range(0..4);
        MlpSpec {
            hidden_layers: (0..n).map(|_| self.rng.random()).collect(),
            activation: self.activation(),
            batch_norm: self.rng.random(),
            dropout: self.num(),
        }
    }

    fn block(&mut self) -> ConvBlock {
        let pool = match self.rng.random_range(0..3) {
            0 => {
                self.saw("pool none");
                Pool::None
            }
            1 => {
                self.saw("pool max");
                Pool::Max(self.small())
            }
            _ => {
                self.saw("pool avg");
                Pool::Avg(self.small())
            }
        };
        ConvBlock {
            channels: self.rng.random(),
            kernel: self.small(),
            stride: self.small(),
            padding: self.small(),
            batch_norm: self.rng.random(),
            activation: self.activation(),
            pool,
        }
    }

    fn model(&mut self) -> ModelSpec {
        match self.rng.random_range(0..3) {
            0 => {
                self.saw("model mlp");
                ModelSpec::Mlp(self.mlp())
            }
            1 => {
                self.saw("model cnn");
                let n = self.rng.random_range(0..4);
                ModelSpec::Cnn(CnnSpec {
                    input: [self.small(), self.small(), self.small()],
                    blocks: (0..n).map(|_| self.block()).collect(),
                    global_average_pool: self.rng.random(),
                    dense: self.mlp(),
                })
            }
            _ => {
                self.saw("model torchscript");
                ModelSpec::TorchScript(ScriptSpec {
                    model_id: self.text(),
                    input_shape: self.option("torchscript input_shape", |g| {
                        [g.small(), g.small(), g.small()]
                    }),
                    // The server fills these in from the uploaded model.
                    file: Default::default(),
                    parameters: 0,
                    needs_batch_of_two: false,
                })
            }
        }
    }

    fn optimizer(&mut self) -> OptimizerSpec {
        match self.rng.random_range(0..5) {
            0 => {
                self.saw("sgd");
                OptimizerSpec::Sgd {
                    momentum: self.num(),
                    nesterov: self.rng.random(),
                    weight_decay: self.num(),
                }
            }
            k @ (1 | 2) => {
                self.saw(if k == 1 { "adam" } else { "adamw" });
                OptimizerSpec::Adam {
                    beta1: self.num(),
                    beta2: self.num(),
                    eps: self.num(),
                    weight_decay: self.num(),
                    decoupled: k == 2,
                }
            }
            3 => {
                self.saw("rmsprop");
                OptimizerSpec::RmsProp {
                    alpha: self.num(),
                    eps: self.num(),
                    momentum: self.num(),
                    weight_decay: self.num(),
                }
            }
            _ => {
                self.saw("adadelta");
                OptimizerSpec::AdaDelta {
                    rho: self.num(),
                    eps: self.num(),
                    weight_decay: self.num(),
                }
            }
        }
    }

    fn selection(&mut self) -> ModelSelection {
        self.pick(&[
            (ModelSelection::Loss, "select loss"),
            (ModelSelection::Accuracy, "select accuracy"),
            (ModelSelection::MacroF1, "select macro f1"),
            (ModelSelection::RocAuc, "select roc auc"),
            (ModelSelection::AveragePrecision, "select average precision"),
        ])
    }

    fn class_weighting(&mut self) -> ClassWeighting {
        let beta = self.num();
        self.pick(&[
            (ClassWeighting::None, "weighting none"),
            (ClassWeighting::Manual, "weighting manual"),
            (ClassWeighting::Balanced, "weighting balanced"),
            (
                ClassWeighting::EffectiveNumber { beta },
                "weighting effective number",
            ),
        ])
    }

    fn resampling(&mut self) -> ResamplingSpec {
        let method = match self.rng.random_range(0..3) {
            0 => {
                self.saw("random oversample");
                ResamplingMethod::RandomOversample
            }
            1 => {
                self.saw("random undersample");
                ResamplingMethod::RandomUndersample
            }
            _ => {
                self.saw("smote");
                ResamplingMethod::Smote {
                    k_neighbors: self.rng.random(),
                }
            }
        };
        ResamplingSpec {
            method,
            ratio: self.num(),
            per_epoch: self.rng.random(),
        }
    }

    fn loss(&mut self) -> LossSpec {
        if self.rng.random_bool(0.5) {
            self.saw("cross entropy");
            LossSpec::CrossEntropy
        } else {
            self.saw("focal");
            LossSpec::Focal { gamma: self.num() }
        }
    }

    /// A plateau schedule's direction is not in the proto: it follows `metric`.
    fn schedule(&mut self, metric: ModelSelection) -> LrSchedule {
        let (s, name) = match self.rng.random_range(0..6) {
            0 => (LrSchedule::Constant, "constant"),
            1 => (
                LrSchedule::Step {
                    step_size: self.rng.random(),
                    gamma: self.num(),
                },
                "step",
            ),
            2 => (LrSchedule::Exponential { gamma: self.num() }, "exponential"),
            3 => (
                LrSchedule::Cosine {
                    warmup_epochs: self.rng.random(),
                    warmup_start_factor: self.num(),
                    eta_min: self.num(),
                },
                "cosine",
            ),
            4 => (
                LrSchedule::OneCycle {
                    pct_start: self.num(),
                    div_factor: self.num(),
                    final_div_factor: self.num(),
                },
                "one cycle",
            ),
            _ => (
                LrSchedule::ReduceOnPlateau {
                    maximize: metric != ModelSelection::Loss,
                    factor: self.num(),
                    patience: self.rng.random(),
                    threshold: self.num(),
                    cooldown: self.rng.random(),
                    min_lr: self.num(),
                },
                "reduce on plateau",
            ),
        };
        self.saw(name);
        s
    }
}

/// The name under which an optional field's unset case is recorded.
fn unset(name: &str) -> String {
    format!("{name} unset")
}

#[test]
fn job_specs_survive_the_round_trip_through_the_proto() {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(0x6772_6164),
        seen: BTreeSet::new(),
    };
    for case in 0..CASES {
        let spec = g.spec();
        let message = pb::JobSpec::from(&spec);
        let wire = pb::JobSpec::decode(message.encode_to_vec().as_slice())
            .unwrap_or_else(|e| panic!("case {case}: decoding failed: {e}"));
        assert_eq!(wire, message, "case {case}: the wire changed the message");
        let back = job_spec(Some(wire)).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(back, spec, "case {case}");
        assert_eq!(JobSpec::try_from(message.clone()).as_ref(), Ok(&spec));
    }
    let mut expected: BTreeSet<String> = [
        "dataset csv",
        "dataset synthetic",
        "dataset uploaded",
        "dataset arrays",
        "model mlp",
        "model cnn",
        "model torchscript",
        "relu",
        "tanh",
        "sigmoid",
        "leaky relu",
        "gelu",
        "pool none",
        "pool max",
        "pool avg",
        "sgd",
        "adam",
        "adamw",
        "rmsprop",
        "adadelta",
        "select loss",
        "select accuracy",
        "select macro f1",
        "select roc auc",
        "select average precision",
        "weighting none",
        "weighting manual",
        "weighting balanced",
        "weighting effective number",
        "random oversample",
        "random undersample",
        "smote",
        "cross entropy",
        "focal",
        "constant",
        "step",
        "exponential",
        "cosine",
        "one cycle",
        "reduce on plateau",
    ]
    .map(String::from)
    .into();
    for optional in [
        "resampling",
        "ensemble",
        "gradient_clip_norm",
        "early_stopping",
        "csv label_column",
        "torchscript input_shape",
    ] {
        expected.insert(optional.to_owned());
        expected.insert(unset(optional));
    }
    let missing: Vec<_> = expected.difference(&g.seen).collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}

/// A spec every conversion accepts: a synthetic dataset and an MLP.
fn good() -> pb::JobSpec {
    pb::JobSpec {
        dataset: Some(pb::Dataset {
            source: Some(pb::dataset::Source::DatasetId("d".into())),
        }),
        model: Some(pb::Model {
            kind: Some(pb::model::Kind::Mlp(pb::Mlp::default())),
        }),
        ..Default::default()
    }
}

#[test]
fn bad_specs_name_the_field_and_the_first_bad_one_wins() {
    let cnn = |activation| {
        pb::model::Kind::Cnn(pb::Cnn {
            blocks: vec![pb::ConvBlock {
                activation,
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    let cases: Vec<(&str, pb::JobSpec, &str)> = vec![
        (
            "no dataset",
            pb::JobSpec {
                dataset: None,
                ..good()
            },
            "spec.dataset",
        ),
        (
            "a dataset without a source",
            pb::JobSpec {
                dataset: Some(pb::Dataset::default()),
                model: None,
                ..good()
            },
            "spec.dataset",
        ),
        (
            "no model",
            pb::JobSpec {
                model: None,
                ..good()
            },
            "spec.model",
        ),
        (
            "a CNN block's activation",
            pb::JobSpec {
                model: Some(pb::Model {
                    kind: Some(cnn(99)),
                }),
                ..good()
            },
            "spec.model.mlp.activation",
        ),
        (
            "a torchscript shape of two",
            pb::JobSpec {
                model: Some(pb::Model {
                    kind: Some(pb::model::Kind::Torchscript(pb::TorchScriptModel {
                        model_id: "m".into(),
                        input_shape: vec![1, 2],
                    })),
                }),
                ..good()
            },
            "spec.model.torchscript.input_shape",
        ),
        (
            "optimizer before metric",
            pb::JobSpec {
                optimizer: Some(pb::Optimizer {
                    kind: 99,
                    ..Default::default()
                }),
                best_model_metric: 99,
                ..good()
            },
            "spec.optimizer.kind",
        ),
        (
            "metric",
            pb::JobSpec {
                best_model_metric: 99,
                ..good()
            },
            "spec.best_model_metric",
        ),
        (
            "weighting",
            pb::JobSpec {
                class_weighting: 99,
                ..good()
            },
            "spec.class_weighting",
        ),
        (
            "resampling",
            pb::JobSpec {
                resampling: Some(pb::Resampling {
                    method: 99,
                    ..Default::default()
                }),
                ..good()
            },
            "spec.resampling.method",
        ),
        (
            "ensemble",
            pb::JobSpec {
                ensemble: Some(pb::Ensemble {
                    kind: 99,
                    members: 3,
                }),
                ..good()
            },
            "spec.ensemble.kind",
        ),
        (
            "loss",
            pb::JobSpec {
                loss: Some(pb::Loss {
                    kind: 99,
                    gamma: None,
                }),
                ..good()
            },
            "spec.loss.kind",
        ),
    ];
    assert!(job_spec(Some(good())).is_ok());
    assert_eq!(job_spec(None).unwrap_err().field, "spec");
    for (what, spec, field) in cases {
        let e = job_spec(Some(spec)).expect_err(what);
        assert_eq!(e.field, field, "{what}: {e}");
    }
}

#[test]
fn unset_fields_take_the_defaults_the_proto_documents() {
    let s = job_spec(Some(good())).unwrap();
    assert_eq!(s.optimizer, OptimizerSpec::adam_default());
    assert_eq!(s.validation_fraction, 0.2);
    assert!(s.layer_diagnostics);
    assert_eq!(s.loss, LossSpec::CrossEntropy);
    assert_eq!(s.lr_schedule, LrSchedule::Constant);
    assert_eq!(s.class_weighting, ClassWeighting::Manual);
    let adamw = pb::Optimizer {
        kind: pb::OptimizerKind::Adamw as i32,
        ..Default::default()
    };
    let s = job_spec(Some(pb::JobSpec {
        optimizer: Some(adamw),
        class_weighting: pb::ClassWeighting::EffectiveNumber as i32,
        resampling: Some(pb::Resampling {
            method: pb::ResamplingMethod::Smote as i32,
            ..Default::default()
        }),
        loss: Some(pb::Loss {
            kind: pb::LossKind::Focal as i32,
            gamma: None,
        }),
        ..good()
    }))
    .unwrap();
    assert!(matches!(
        s.optimizer,
        OptimizerSpec::Adam {
            weight_decay: 0.01,
            decoupled: true,
            ..
        }
    ));
    assert_eq!(
        s.class_weighting,
        ClassWeighting::EffectiveNumber { beta: 0.999 }
    );
    assert_eq!(
        s.resampling,
        Some(ResamplingSpec {
            method: ResamplingMethod::Smote { k_neighbors: 5 },
            ratio: 1.0,
            per_epoch: false,
        })
    );
    assert_eq!(s.loss, LossSpec::Focal { gamma: 2.0 });
}

#[test]
fn request_fields_name_themselves() {
    use crate::jobs::JobQuery;
    let query = |statuses, page_size| {
        JobQuery::try_from(pb::ListJobsRequest {
            statuses,
            page_size,
            ..Default::default()
        })
    };
    assert_eq!(query(vec![1, 0], 0).unwrap_err().field, "statuses[1]");
    assert_eq!(query(vec![], 1001).unwrap_err().field, "page_size");
    assert_eq!(query(vec![], 0).unwrap().page_size, 100);
    assert_eq!(super::model_version(99).unwrap_err().field, "model");
    assert_eq!(
        super::model_version(0),
        Ok(crate::domain::ModelVersion::Best)
    );
    assert_eq!(super::export_format(0).unwrap_err().field, "format");
    assert_eq!(super::eval_data(None).unwrap_err().field, "data");
}
