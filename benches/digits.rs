//! `make bench`, part 5: a small CNN on scikit-learn's 8x8 digits through the service.
//! Goal: at least 97% validation accuracy in under a minute on 2 CPU cores. Reports the
//! best epoch's validation accuracy and the job's wall time (submit to SUCCEEDED).

mod common;

use std::time::Instant;

use common::{bench_script, run_python, start_server, train_events};
use gradstream::transport::pb::{self, trainer_client::TrainerClient};

fn block(channels: u32) -> pb::ConvBlock {
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

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("digits.csv");
    run_python(&[
        bench_script("make_digits.py").to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    let server = start_server(dir.path()).await;
    let mut c = TrainerClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let spec = pb::JobSpec {
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
                blocks: vec![block(32), block(64)],
                global_average_pool: false,
                dense: Some(pb::Mlp {
                    hidden_layers: vec![128],
                    activation: pb::Activation::Relu as i32,
                    batch_norm: false,
                    dropout: 0.3,
                }),
            })),
        }),
        epochs: 30,
        batch_size: 32,
        learning_rate: 2e-3,
        validation_fraction: Some(0.2),
        seed: 1,
        best_model_metric: pb::ModelSelectionMetric::Accuracy as i32,
        ..Default::default()
    };
    let start = Instant::now();
    let mut accuracies = Vec::new();
    for e in train_events(&mut c, spec).await {
        match e.kind {
            Some(pb::job_event::Kind::Epoch(x)) => {
                accuracies.push(x.validation.map_or(f64::NAN, |v| v.accuracy))
            }
            Some(pb::job_event::Kind::Status(s)) if s.status == pb::JobStatus::Failed as i32 => {
                panic!("{}", s.message)
            }
            _ => {}
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (best_epoch, best) = accuracies
        .iter()
        .enumerate()
        .fold((0, 0.0), |b, (i, &a)| if a > b.1 { (i + 1, a) } else { b });
    println!("digits (8x8, 1,797 images, 360 held out): CNN 32-64 conv + 128 dense, 30 epochs");
    println!(
        "  best validation accuracy {best:.4} at epoch {best_epoch}; last {:.4}",
        accuracies.last().unwrap()
    );
    println!("  wall time {seconds:.1} s (goal: >= 0.97 in < 60 s)");
}
