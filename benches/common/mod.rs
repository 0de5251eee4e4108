//! Shared by the benchmarks: an in-process server on 127.0.0.1:0 and the job they train.
#![allow(dead_code)]

use std::time::SystemTime;

use gradstream::config::ServeConfig;
use gradstream::server::{self, RunningServer};
use gradstream::transport::pb;

/// Training samples per epoch (the service's job holds another 15,000 out for validation).
pub const SAMPLES: u32 = 60_000;
/// The fraction of the job's dataset held out for validation: 15,000 of 75,000 rows.
pub const HELD_OUT: f64 = 0.2;
pub const FEATURES: u32 = 32;
pub const HIDDEN: u32 = 128;
pub const CLASSES: u32 = 10;
pub const BATCH: u32 = 64;
pub const EPOCHS: u32 = 3;
pub const LR: f64 = 1e-3;

pub async fn start_server(dir: &std::path::Path) -> RunningServer {
    let config = ServeConfig::local(dir.to_path_buf(), dir.join("state"));
    server::start(&config).await.expect("server starts")
}

/// 32 → 128 → 10 MLP, Adam, batch 64, 75,000 synthetic samples: 60,000 to train on and
/// 15,000 held out (validation metrics and curves at every epoch end, as a user's job has).
pub fn bench_spec(report_every: u32) -> pb::JobSpec {
    pb::JobSpec {
        name: "bench".into(),
        dataset: Some(pb::Dataset {
            source: Some(pb::dataset::Source::Synthetic(pb::SyntheticDataset {
                samples: (f64::from(SAMPLES) / (1.0 - HELD_OUT)).round() as u32,
                features: FEATURES,
                classes: CLASSES,
                class_ratios: vec![],
                separation: Some(3.0),
                seed: 0,
            })),
        }),
        model: Some(pb::Model {
            kind: Some(pb::model::Kind::Mlp(pb::Mlp {
                hidden_layers: vec![HIDDEN],
                activation: pb::Activation::Relu as i32,
                batch_norm: false,
                dropout: 0.0,
            })),
        }),
        epochs: EPOCHS,
        batch_size: BATCH,
        learning_rate: LR,
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Adam as i32,
            ..Default::default()
        }),
        class_weights: vec![],
        validation_fraction: Some(HELD_OUT),
        seed: 0,
        report_every,
        best_model_metric: 0,
        ..Default::default()
    }
}

pub fn to_system_time(t: &Option<prost_types::Timestamp>) -> SystemTime {
    SystemTime::try_from(t.expect("event time")).expect("valid time")
}

/// Seconds between the RUNNING and the terminal status events of a finished job's history.
pub fn training_seconds(events: &[pb::JobEvent]) -> f64 {
    use pb::job_event::Kind;
    let status_time = |want: pb::JobStatus| {
        events
            .iter()
            .find(|e| matches!(&e.kind, Some(Kind::Status(s)) if s.status == want as i32))
            .map(|e| to_system_time(&e.time))
            .expect("status event")
    };
    let end = status_time(pb::JobStatus::Succeeded);
    end.duration_since(status_time(pb::JobStatus::Running))
        .unwrap()
        .as_secs_f64()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Submits `spec` through `Train` and returns every event of the job, to its end.
pub async fn train_events(
    client: &mut gradstream::transport::pb::trainer_client::TrainerClient<
        tonic::transport::Channel,
    >,
    spec: pb::JobSpec,
) -> Vec<pb::JobEvent> {
    let mut stream = client
        .train(pb::SubmitJobRequest {
            spec: Some(spec),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        events.push(e);
    }
    events
}

/// A script of `bench/`.
pub fn bench_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench")
        .join(name)
}

/// Runs `.venv/bin/python` with `args`; its standard output. Panics with its errors.
pub fn run_python(args: &[&str]) -> Vec<u8> {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let out = std::process::Command::new(python)
        .args(args)
        .output()
        .expect("run .venv/bin/python (make setup creates it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The benchmark MLP trained in eager PyTorch (bench/pytorch_mlp.py) with `threads`
/// intra-op threads; its training seconds.
pub fn pytorch_seconds(threads: i32) -> f64 {
    let path = bench_script("pytorch_mlp.py");
    let numbers = [
        ("--samples", SAMPLES),
        ("--features", FEATURES),
        ("--hidden", HIDDEN),
        ("--classes", CLASSES),
        ("--batch-size", BATCH),
        ("--epochs", EPOCHS),
    ]
    .map(|(flag, v)| (flag, v.to_string()));
    let threads = threads.to_string();
    let mut args = vec![path.to_str().unwrap()];
    for (flag, v) in &numbers {
        args.push(flag);
        args.push(v);
    }
    args.extend(["--threads", &threads]);
    let v: serde_json::Value = serde_json::from_slice(&run_python(&args)).unwrap();
    v["seconds"].as_f64().unwrap()
}

/// The digits CNN's batch size and learning rate (benches/digits.rs, the throughput
/// bench's CNN case and bench/pytorch_cnn.py).
pub const DIGITS_BATCH: u32 = 32;
pub const DIGITS_LR: f64 = 2e-3;
/// The digits CNN's held-out fraction: 360 of the 1,797 images.
pub const DIGITS_HELD_OUT: f64 = 0.2;

fn conv_block(channels: u32) -> pb::ConvBlock {
    pb::ConvBlock {
        channels,
        kernel_size: 3,
        padding: 1,
        batch_norm: true,
        activation: pb::Activation::Relu as i32,
        pool: pb::PoolKind::Max as i32,
        ..Default::default()
    }
}

/// A small CNN on scikit-learn's 8x8 digits (`digits.csv` in the server's data folder,
/// [`write_digits_csv`]): conv blocks of 32 and 64 channels (3x3, batch norm, ReLU, 2x2
/// max pooling), a 128-unit dense layer with dropout 0.3, Adam.
pub fn digits_cnn_spec(epochs: u32) -> pb::JobSpec {
    pb::JobSpec {
        name: "digits-cnn".into(),
        dataset: Some(pb::Dataset {
            source: Some(pb::dataset::Source::Csv(pb::CsvDataset {
                path: "digits.csv".into(),
                label_column: String::new(),
            })),
        }),
        model: Some(pb::Model {
            kind: Some(pb::model::Kind::Cnn(pb::Cnn {
                channels: 1,
                height: 8,
                width: 8,
                blocks: vec![conv_block(32), conv_block(64)],
                global_average_pool: false,
                dense: Some(pb::Mlp {
                    hidden_layers: vec![128],
                    activation: pb::Activation::Relu as i32,
                    batch_norm: false,
                    dropout: 0.3,
                }),
            })),
        }),
        epochs,
        batch_size: DIGITS_BATCH,
        learning_rate: DIGITS_LR,
        validation_fraction: Some(DIGITS_HELD_OUT),
        seed: 1,
        best_model_metric: pb::ModelSelectionMetric::Accuracy as i32,
        ..Default::default()
    }
}

/// Writes scikit-learn's digits as `dir/digits.csv` (bench/make_digits.py).
pub fn write_digits_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let csv = dir.join("digits.csv");
    run_python(&[
        bench_script("make_digits.py").to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    csv
}

/// The digits CNN trained in eager PyTorch (bench/pytorch_cnn.py) on the first `rows` rows
/// of `csv` for `epochs` epochs with `threads` intra-op threads; its training seconds.
pub fn pytorch_cnn_seconds(csv: &std::path::Path, rows: usize, epochs: u32, threads: i32) -> f64 {
    let out = run_python(&[
        bench_script("pytorch_cnn.py").to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--rows",
        &rows.to_string(),
        "--epochs",
        &epochs.to_string(),
        "--batch-size",
        &DIGITS_BATCH.to_string(),
        "--lr",
        &DIGITS_LR.to_string(),
        "--threads",
        &threads.to_string(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("pytorch_cnn.py prints JSON");
    v["seconds"].as_f64().expect("seconds")
}
