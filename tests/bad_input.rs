//! Every bad input gets INVALID_ARGUMENT naming the field (or file, line and column) and
//! the fix; nothing is queued, nothing panics, and the server carries on.

mod common;

use common::*;
use gradstream::transport::pb;
use tonic::Code;

type Mutate = fn(&mut pb::JobSpec);

fn mlp(s: &mut pb::JobSpec) -> &mut pb::Mlp {
    match s.model.as_mut().unwrap().kind.as_mut().unwrap() {
        pb::model::Kind::Mlp(m) => m,
        _ => unreachable!("the test specs are MLPs"),
    }
}

/// (what, how to break a good spec, text the message must contain)
const SPEC_CASES: &[(&str, Mutate, &[&str])] = &[
    (
        "no spec fields at all",
        |s| *s = pb::JobSpec::default(),
        &["spec.dataset", "is required"],
    ),
    (
        "no model",
        |s| s.model = None,
        &["spec.model", "is required"],
    ),
    ("epochs 0", |s| s.epochs = 0, &["spec.epochs", "at least 1"]),
    (
        "epochs absurd",
        |s| s.epochs = 1_000_000,
        &["spec.epochs", "limit of 10000"],
    ),
    (
        "batch_size 0",
        |s| s.batch_size = 0,
        &["spec.batch_size", "at least 1"],
    ),
    (
        "batch_size absurd",
        |s| s.batch_size = u32::MAX,
        &["spec.batch_size", "limit"],
    ),
    (
        "learning_rate 0",
        |s| s.learning_rate = 0.0,
        &["spec.learning_rate", "> 0"],
    ),
    (
        "learning_rate negative",
        |s| s.learning_rate = -1.0,
        &["spec.learning_rate", "got -1"],
    ),
    (
        "learning_rate NaN",
        |s| s.learning_rate = f64::NAN,
        &["spec.learning_rate", "finite"],
    ),
    (
        "learning_rate infinite",
        |s| s.learning_rate = f64::INFINITY,
        &["spec.learning_rate", "finite"],
    ),
    (
        "class_weights too short",
        |s| s.class_weights = vec![1.0],
        &[
            "spec.class_weights",
            "has 1 entries but the dataset has 2 classes",
        ],
    ),
    (
        "class_weights too long",
        |s| s.class_weights = vec![1.0, 1.0, 1.0],
        &["spec.class_weights", "one weight per class"],
    ),
    (
        "class_weights negative",
        |s| s.class_weights = vec![1.0, -2.0],
        &["spec.class_weights[1]", ">= 0"],
    ),
    (
        "class_weights all zero",
        |s| s.class_weights = vec![0.0, 0.0],
        &["spec.class_weights", "all zero"],
    ),
    (
        "class_weights NaN",
        |s| s.class_weights = vec![f64::NAN, 1.0],
        &["spec.class_weights[0]", "finite"],
    ),
    (
        "validation_fraction 0.9",
        |s| s.validation_fraction = Some(0.9),
        &["spec.validation_fraction", "[0, 0.9)"],
    ),
    (
        "validation_fraction negative",
        |s| s.validation_fraction = Some(-0.1),
        &["spec.validation_fraction"],
    ),
    (
        "one class",
        |s| synthetic(s).classes = 1,
        &["spec.dataset.synthetic.classes", "at least 2"],
    ),
    (
        "empty synthetic dataset",
        |s| synthetic(s).samples = 0,
        &["spec.dataset.synthetic.samples", "empty dataset"],
    ),
    (
        "no features",
        |s| synthetic(s).features = 0,
        &["spec.dataset.synthetic.features"],
    ),
    (
        "ratios of the wrong length",
        |s| synthetic(s).class_ratios = vec![1.0],
        &["class_ratios", "one ratio per class"],
    ),
    (
        "dropout 1",
        |s| mlp(s).dropout = 1.0,
        &["spec.model.mlp.dropout", "[0, 1)"],
    ),
    (
        "batch norm with a last batch of one sample",
        |s| {
            // 100 samples: 80 train = 79 + 1.
            s.batch_size = 79;
            mlp(s).batch_norm = true;
        },
        &["spec.batch_size", "leave a batch of 1", "e.g. 80"],
    ),
    (
        "a model too large to allocate",
        |s| mlp(s).hidden_layers = vec![65_536; 8],
        &["spec.model", "parameters", "limit of 100000000"],
    ),
    (
        "synthetic data too large to allocate",
        |s| {
            synthetic(s).samples = 10_000_000;
            synthetic(s).features = 100_000;
        },
        &[
            "spec.dataset.synthetic.samples",
            "values, more than the limit",
        ],
    ),
    (
        "a zero-width layer",
        |s| mlp(s).hidden_layers = vec![8, 0],
        &["spec.model.mlp.hidden_layers[1]"],
    ),
    (
        "unknown activation",
        |s| mlp(s).activation = 99,
        &["spec.model.mlp.activation", "RELU"],
    ),
    (
        "unknown optimizer",
        |s| {
            s.optimizer = Some(pb::Optimizer {
                kind: 42,
                ..Default::default()
            })
        },
        &["spec.optimizer.kind", "ADAM"],
    ),
    (
        "nesterov without momentum",
        |s| {
            s.optimizer = Some(pb::Optimizer {
                kind: pb::OptimizerKind::Sgd as i32,
                nesterov: true,
                ..Default::default()
            })
        },
        &["spec.optimizer.nesterov", "momentum"],
    ),
    (
        "adam beta1 1",
        |s| {
            s.optimizer = Some(pb::Optimizer {
                beta1: Some(1.0),
                ..Default::default()
            })
        },
        &["spec.optimizer.beta1"],
    ),
    (
        "weights with BALANCED",
        |s| {
            s.class_weighting = pb::ClassWeighting::Balanced as i32;
            s.class_weights = vec![1.0, 2.0];
        },
        &["spec.class_weights", "BALANCED", "MANUAL"],
    ),
    (
        "weights with NONE",
        |s| {
            s.class_weighting = pb::ClassWeighting::None as i32;
            s.class_weights = vec![1.0, 2.0];
        },
        &["spec.class_weights", "NONE"],
    ),
    (
        "effective number beta 1",
        |s| {
            s.class_weighting = pb::ClassWeighting::EffectiveNumber as i32;
            s.effective_number_beta = Some(1.0);
        },
        &["spec.effective_number_beta", "[0, 1)"],
    ),
    (
        "resampling ratio 0",
        |s| {
            s.resampling = Some(pb::Resampling {
                method: pb::ResamplingMethod::RandomOversample as i32,
                ratio: Some(0.0),
                ..Default::default()
            })
        },
        &["spec.resampling.ratio", "(0, 1]"],
    ),
    (
        "resampling ratio 1.5",
        |s| {
            s.resampling = Some(pb::Resampling {
                method: pb::ResamplingMethod::RandomUndersample as i32,
                ratio: Some(1.5),
                ..Default::default()
            })
        },
        &["spec.resampling.ratio"],
    ),
    (
        "SMOTE k larger than the smallest class",
        |s| {
            synthetic(s).class_ratios = vec![0.95, 0.05];
            s.resampling = Some(pb::Resampling {
                method: pb::ResamplingMethod::Smote as i32,
                k_neighbors: Some(5),
                ..Default::default()
            })
        },
        &[
            "spec.resampling.k_neighbors",
            "4 training rows",
            "at most 3",
        ],
    ),
    (
        "SMOTE k 0",
        |s| {
            s.resampling = Some(pb::Resampling {
                method: pb::ResamplingMethod::Smote as i32,
                k_neighbors: Some(0),
                ..Default::default()
            })
        },
        &["spec.resampling.k_neighbors", "at least 1"],
    ),
    (
        "an ensemble of one",
        |s| {
            s.ensemble = Some(pb::Ensemble {
                kind: pb::EnsembleKind::BalancedBagging as i32,
                members: 1,
            })
        },
        &["spec.ensemble.members", "2 to 50"],
    ),
    (
        "bagging and resampling together",
        |s| {
            s.ensemble = Some(pb::Ensemble {
                kind: pb::EnsembleKind::BalancedBagging as i32,
                members: 3,
            });
            s.resampling = Some(pb::Resampling {
                method: pb::ResamplingMethod::Smote as i32,
                ..Default::default()
            });
        },
        &["spec.resampling", "BALANCED_BAGGING", "remove one"],
    ),
    (
        "focal gamma negative",
        |s| {
            s.loss = Some(pb::Loss {
                kind: pb::LossKind::Focal as i32,
                gamma: Some(-1.0),
            })
        },
        &["spec.loss.gamma", "[0, 20]"],
    ),
    (
        "a CNN input that is not the feature columns",
        |s| {
            s.model = Some(pb::Model {
                kind: Some(pb::model::Kind::Cnn(pb::Cnn {
                    channels: 1,
                    height: 3,
                    width: 3,
                    blocks: vec![],
                    ..Default::default()
                })),
            })
        },
        &["spec.model.cnn.input", "1 x 3 x 3 = 9", "8 feature columns"],
    ),
    (
        "a CNN whose blocks leave no feature map",
        |s| {
            s.model = Some(pb::Model {
                kind: Some(pb::model::Kind::Cnn(pb::Cnn {
                    channels: 2,
                    height: 2,
                    width: 2,
                    blocks: vec![pb::ConvBlock {
                        channels: 4,
                        kernel_size: 3,
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
            })
        },
        &["spec.model.cnn.blocks[0]", "leaves no feature map"],
    ),
    (
        "unknown resampling method",
        |s| {
            s.resampling = Some(pb::Resampling {
                method: 42,
                ..Default::default()
            })
        },
        &["spec.resampling.method", "42", "SMOTE"],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_invalid_argument_naming_the_field() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    for (what, mutate, needles) in SPEC_CASES {
        let mut s = spec(100, 2, 1);
        mutate(&mut s);
        for call in ["submit", "train"] {
            let err = match call {
                "submit" => c
                    .submit_job(request(s.clone()))
                    .await
                    .map(|_| ())
                    .unwrap_err(),
                _ => c.train(request(s.clone())).await.map(|_| ()).unwrap_err(),
            };
            assert_eq!(
                err.code(),
                Code::InvalidArgument,
                "{what} ({call}): {}",
                err.message()
            );
            for n in *needles {
                assert!(
                    err.message().contains(n),
                    "{what} ({call}): {:?} lacks {n:?}",
                    err.message()
                );
            }
        }
    }
    // Nothing was queued, and a good job still trains.
    assert!(
        c.list_jobs(pb::ListJobsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .jobs
            .is_empty()
    );
    let ok = train(&mut c, spec(100, 2, 1)).await;
    assert_eq!(statuses(&ok).last(), Some(&pb::JobStatus::Succeeded));
}

/// (file name, contents, label column, expected message parts)
const CSV_CASES: &[(&str, &str, &str, &[&str])] = &[
    (
        "ragged.csv",
        "a,b,y\n1,2,0\n3,4,1\n5,1\n",
        "",
        &["ragged.csv:4:3:", "2 fields but the header has 3"],
    ),
    (
        "text.csv",
        "a,b,y\n1,2,0\n3,x4,1\n",
        "",
        &["text.csv:3:2:", "column 'b'", "\"x4\"", "not a number"],
    ),
    (
        "nan.csv",
        "a,b,y\n1,NaN,0\n",
        "",
        &["nan.csv:2:2:", "not finite"],
    ),
    (
        "nolabel.csv",
        "a,b,y\n1,2,0\n",
        "target",
        &["nolabel.csv:1:1:", "no column named 'target'", "a, b, y"],
    ),
    (
        "emptylabel.csv",
        "a,y\n1,\n",
        "",
        &["emptylabel.csv:2:2:", "label"],
    ),
    ("empty.csv", "", "", &["empty.csv:1:1:", "empty"]),
    (
        "header-only.csv",
        "a,b,y\n",
        "",
        &["header-only.csv:1:1:", "empty dataset"],
    ),
    (
        "one-class.csv",
        "a,y\n1,cat\n2,cat\n",
        "",
        &["spec.dataset", "only one class ('cat')", "at least 2"],
    ),
    (
        "one-column.csv",
        "y\n1\n",
        "",
        &["one-column.csv:1:1:", "only one column"],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_csv_files_name_file_line_and_column() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    for (name, text, label, needles) in CSV_CASES {
        ts.write_csv(name, text);
        let err = c
            .submit_job(request(csv_spec(name, label)))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{name}: {}",
            err.message()
        );
        for n in *needles {
            assert!(
                err.message().contains(n),
                "{name}: {:?} lacks {n:?}",
                err.message()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_paths_outside_the_data_directory_are_refused() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.csv");
    std::fs::write(&secret, "a,y\n1,0\n2,1\n").unwrap();
    std::os::unix::fs::symlink(&secret, ts.data_path().join("link.csv")).unwrap();
    std::fs::create_dir(ts.data_path().join("sub")).unwrap();
    let absolute = secret.display().to_string();
    let cases: &[(&str, &str)] = &[
        (&absolute, "is absolute"),
        ("../secret.csv", "'..' is not allowed"),
        ("sub/../../secret.csv", "'..' is not allowed"),
        ("link.csv", "leads outside the data directory"),
        ("missing.csv", "cannot be opened"),
        ("sub", "not a regular file"),
        ("", "is empty"),
    ];
    for (path, needle) in cases {
        let err = c.submit_job(request(csv_spec(path, ""))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{path}");
        assert!(
            err.message().contains("spec.dataset.csv.path"),
            "{path}: {}",
            err.message()
        );
        assert!(
            err.message().contains(needle),
            "{path}: {:?} lacks {needle:?}",
            err.message()
        );
    }
}
