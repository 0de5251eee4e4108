//! `make bench`, part 3: the class-imbalance remedies side by side on one skewed problem
//! (a 2% minority, generated with a fixed seed). For each remedy, a job trains through the
//! in-process server and the validation split of its final model (for the ensemble, the
//! ensemble's) gives the minority class's recall, the macro F1 and the minority class's
//! PR AUC (average precision). The validation split is the same rows for every remedy.

mod common;

use common::{start_server, train_events};
use gradstream::transport::pb::{self, trainer_client::TrainerClient};

const SAMPLES: u32 = 20_000;
const MINORITY: f64 = 0.02;

fn base() -> pb::JobSpec {
    pb::JobSpec {
        name: "imbalance".into(),
        dataset: Some(pb::Dataset {
            source: Some(pb::dataset::Source::Synthetic(pb::SyntheticDataset {
                samples: SAMPLES,
                features: 16,
                classes: 2,
                class_ratios: vec![1.0 - MINORITY, MINORITY],
                separation: Some(0.35),
                seed: 2026,
            })),
        }),
        model: Some(pb::Model {
            kind: Some(pb::model::Kind::Mlp(pb::Mlp {
                hidden_layers: vec![32],
                activation: pb::Activation::Relu as i32,
                batch_norm: false,
                dropout: 0.0,
            })),
        }),
        epochs: 8,
        batch_size: 128,
        learning_rate: 1e-3,
        validation_fraction: Some(0.25),
        seed: 7,
        ..Default::default()
    }
}

fn remedies() -> Vec<(&'static str, pb::JobSpec)> {
    let mut out = vec![("NONE", base())];
    let mut s = base();
    s.class_weighting = pb::ClassWeighting::Balanced as i32;
    out.push(("BALANCED weights", s));
    let mut s = base();
    s.resampling = Some(pb::Resampling {
        method: pb::ResamplingMethod::Smote as i32,
        ratio: Some(1.0),
        k_neighbors: Some(5),
        per_epoch: false,
    });
    out.push(("SMOTE (ratio 1, k 5)", s));
    let mut s = base();
    s.ensemble = Some(pb::Ensemble {
        kind: pb::EnsembleKind::BalancedBagging as i32,
        members: 5,
    });
    out.push(("BALANCED_BAGGING (5 members)", s));
    let mut s = base();
    s.loss = Some(pb::Loss {
        kind: pb::LossKind::Focal as i32,
        gamma: Some(2.0),
    });
    out.push(("FOCAL (gamma 2)", s));
    let mut s = base();
    s.loss = Some(pb::Loss {
        kind: pb::LossKind::Focal as i32,
        gamma: Some(2.0),
    });
    s.class_weighting = pb::ClassWeighting::Balanced as i32;
    out.push(("FOCAL + BALANCED weights", s));
    out
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let mut c = TrainerClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    println!(
        "imbalance: {SAMPLES} samples, minority {:.0}%, 25% held out for validation",
        MINORITY * 100.0
    );
    println!(
        "| remedy | minority recall | minority precision | macro F1 | minority PR AUC | ROC AUC | accuracy | seconds |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, spec) in remedies() {
        let start = std::time::Instant::now();
        let mut last = None;
        for e in train_events(&mut c, spec).await {
            match e.kind {
                Some(pb::job_event::Kind::Epoch(x)) => last = Some(x),
                Some(pb::job_event::Kind::Status(s))
                    if s.status == pb::JobStatus::Failed as i32 =>
                {
                    panic!("{name}: {}", s.message)
                }
                _ => {}
            }
        }
        let v = last.and_then(|e| e.validation).expect("validation metrics");
        let minority = &v.per_class[1];
        let ap = v.curves[1]
            .pr
            .as_ref()
            .map_or(f64::NAN, |p| p.average_precision);
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.4} | {:.1} |",
            minority.recall,
            minority.precision,
            v.r#macro.map_or(f64::NAN, |a| a.f1),
            ap,
            v.roc_auc.unwrap_or(f64::NAN),
            v.accuracy,
            start.elapsed().as_secs_f64()
        );
    }
}
