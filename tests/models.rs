//! Trained models through the real server: Predict, Evaluate (checked against
//! scikit-learn), ExportModel (loaded back in PyTorch), best-epoch selection, and the
//! curves in the epoch stream.

mod common;

use std::path::Path;

use common::rng::Rng;
use common::{TestServer, epochs, run_reference, spec, train};
use gradstream::transport::pb::{self, trainer_client::TrainerClient};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

/// `n` rows of `d` raw values spread around the synthetic data's scale.
fn random_rows(seed: u64, n: usize, d: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| (0..d).map(|_| (rng.unit() * 8.0 - 4.0) as f32).collect())
        .collect()
}

async fn finished_job(c: &mut TrainerClient<Channel>, s: pb::JobSpec) -> pb::Job {
    let events = train(c, s).await;
    assert_eq!(
        common::statuses(&events).last(),
        Some(&pb::JobStatus::Succeeded),
        "{}",
        common::last_message(&events)
    );
    let id = events[0].job_id.clone();
    c.get_job(pb::GetJobRequest { job_id: id })
        .await
        .unwrap()
        .into_inner()
}

async fn predict(
    c: &mut TrainerClient<Channel>,
    job_id: &str,
    rows: &[Vec<f32>],
    model: pb::ModelVersion,
) -> Result<pb::PredictResponse, tonic::Status> {
    c.predict(pb::PredictRequest {
        job_id: job_id.into(),
        rows: rows
            .iter()
            .map(|r| pb::FeatureRow { values: r.clone() })
            .collect(),
        model: model as i32,
    })
    .await
    .map(|r| r.into_inner())
}

/// Every file of an export, by name.
async fn export(
    c: &mut TrainerClient<Channel>,
    job_id: &str,
    format: pb::ExportFormat,
    dir: &Path,
) -> Vec<(String, std::path::PathBuf)> {
    let mut stream = c
        .export_model(pb::ExportModelRequest {
            job_id: job_id.into(),
            format: format as i32,
            model: pb::ModelVersion::Best as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let mut files: Vec<(pb::ExportedFile, Vec<u8>)> = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        match chunk.part.unwrap() {
            pb::export_chunk::Part::File(f) => files.push((f, Vec::new())),
            pb::export_chunk::Part::Data(d) => files.last_mut().unwrap().1.extend(d),
        }
    }
    files
        .into_iter()
        .map(|(f, bytes)| {
            use sha2::Digest;
            assert_eq!(bytes.len() as u64, f.size, "{}: size", f.name);
            assert_eq!(
                format!("{:x}", sha2::Sha256::digest(&bytes)),
                f.sha256,
                "{}: sha256",
                f.name
            );
            let path = dir.join(&f.name);
            std::fs::write(&path, bytes).unwrap();
            (f.name, path)
        })
        .collect()
}

fn probs(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_models_give_predicts_probabilities_in_pytorch() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut s = spec(600, 3, 4);
    s.model = common::mlp(vec![16, 12], pb::Activation::Tanh, true, 0.2);
    let job = finished_job(&mut c, s).await;
    assert_eq!(job.feature_names.len(), 8);
    assert!(job.best_epoch >= 1 && job.best_epoch <= 4);

    let rows = random_rows(7, 64, 8);
    let p = predict(&mut c, &job.id, &rows, pb::ModelVersion::Best)
        .await
        .unwrap();
    assert_eq!(p.epoch, job.best_epoch);
    assert_eq!(p.labels, job.labels);
    assert_eq!(p.predictions.len(), rows.len());

    let dir = tempfile::tempdir().unwrap();
    let ts = export(&mut c, &job.id, pb::ExportFormat::Torchscript, dir.path()).await;
    let st = export(&mut c, &job.id, pb::ExportFormat::Safetensors, dir.path()).await;
    let names: Vec<&str> = ts.iter().chain(&st).map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["model.pt", "model.safetensors", "model_card.json"]);
    let card: Value = serde_json::from_slice(&std::fs::read(&st[1].1).unwrap()).unwrap();
    assert_eq!(card["epoch"], json!(job.best_epoch));
    assert_eq!(card["labels"], json!(job.labels));
    assert_eq!(card["features"], json!(job.feature_names));
    assert_eq!(card["metrics"]["epoch"], json!(job.best_epoch));

    let rows_path = dir.path().join("rows.json");
    std::fs::write(&rows_path, serde_json::to_vec(&rows).unwrap()).unwrap();
    let out_path = dir.path().join("out.json");
    run_reference(
        "check_export.py",
        &[&ts[0].1, &st[0].1, &st[1].1, &rows_path, &out_path],
    );
    let out: Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    for format in ["torchscript", "safetensors"] {
        let torch = probs(&out[format]);
        assert_eq!(torch.len(), rows.len(), "{format}");
        for (i, (want, got)) in p.predictions.iter().zip(&torch).enumerate() {
            for (j, (a, b)) in want.probabilities.iter().zip(got).enumerate() {
                assert!(
                    (f64::from(*a) - b).abs() <= 1e-5,
                    "{format}: row {i} class {j}: Predict {a}, PyTorch {b}"
                );
            }
            let class = want.class_index as usize;
            assert_eq!(want.label, job.labels[class]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_names_bad_rows_and_takes_large_batches() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let job = finished_job(&mut c, spec(300, 2, 2)).await;
    let mut rows = random_rows(1, 10_000, 8);
    let p = predict(&mut c, &job.id, &rows, pb::ModelVersion::Last)
        .await
        .unwrap();
    assert_eq!(p.predictions.len(), 10_000);
    assert_eq!(p.epoch, 2);
    for pred in &p.predictions {
        let sum: f32 = pred.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
        let best = pred.probabilities.iter().enumerate().fold(0, |b, (i, &v)| {
            if v > pred.probabilities[b] { i } else { b }
        });
        assert_eq!(pred.class_index as usize, best);
    }

    rows[4321].pop();
    let e = predict(&mut c, &job.id, &rows, pb::ModelVersion::Best)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("rows[4321]"), "{}", e.message());
    assert!(
        e.message().contains("has 7 values but the model takes 8"),
        "{}",
        e.message()
    );

    rows[4321].push(1.0);
    rows[17][3] = f32::NAN;
    let e = predict(&mut c, &job.id, &rows, pb::ModelVersion::Best)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("rows[17].values[3]"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("'x3' is NaN"), "{}", e.message());

    let e = predict(&mut c, "no-such-job", &rows[..1], pb::ModelVersion::Best)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = predict(&mut c, &job.id, &[], pb::ModelVersion::Best)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_a_finished_epoch_has_no_model() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    // The first job holds the only slot, so the second stays queued.
    let busy = c
        .submit_job(common::request(spec(200_000, 2, 50)))
        .await
        .unwrap()
        .into_inner();
    let queued = c
        .submit_job(common::request(spec(100, 2, 1)))
        .await
        .unwrap()
        .into_inner();
    let e = predict(&mut c, &queued.id, &[vec![0.0; 8]], pb::ModelVersion::Best)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(
        e.message().contains("no trained model yet"),
        "{}",
        e.message()
    );
    for id in [&busy.id, &queued.id] {
        c.cancel_job(pb::CancelJobRequest { job_id: id.clone() })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_best_epoch_is_kept_by_the_metric_the_spec_names() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    for (metric, pick) in [
        (pb::ModelSelectionMetric::Loss, "loss"),
        (pb::ModelSelectionMetric::MacroF1, "f1"),
    ] {
        let mut s = spec(400, 3, 6);
        // A high learning rate makes the validation metrics move around between epochs.
        s.learning_rate = 0.3;
        s.optimizer = Some(pb::Optimizer {
            kind: pb::OptimizerKind::Sgd as i32,
            momentum: 0.9,
            ..Default::default()
        });
        s.best_model_metric = metric as i32;
        let events = train(&mut c, s).await;
        let ends = epochs(&events);
        assert_eq!(ends.len(), 6);
        let value = |e: &pb::EpochEnd| {
            let v = e.validation.as_ref().unwrap();
            match pick {
                "loss" => -v.loss,
                _ => v.r#macro.unwrap().f1,
            }
        };
        // The first epoch with the best value wins; each event names the best so far.
        let mut best = 0usize;
        for (i, e) in ends.iter().enumerate() {
            if value(e) > value(&ends[best]) {
                best = i;
            }
            assert_eq!(e.best_epoch, ends[best].epoch, "{pick}: epoch {}", e.epoch);
        }
        let id = events[0].job_id.clone();
        let job = c
            .get_job(pb::GetJobRequest { job_id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(job.best_epoch, ends[best].epoch, "{pick}");
        let want = match pick {
            "loss" => ends[best].validation.as_ref().unwrap().loss,
            _ => value(&ends[best]),
        };
        assert_eq!(job.best_metric_value, Some(want));
        let row = vec![vec![0.5f32; 8]];
        let best_p = predict(&mut c, &id, &row, pb::ModelVersion::Best)
            .await
            .unwrap();
        let last_p = predict(&mut c, &id, &row, pb::ModelVersion::Last)
            .await
            .unwrap();
        assert_eq!(best_p.epoch, job.best_epoch);
        assert_eq!(last_p.epoch, 6);
        if job.best_epoch != 6 {
            assert_ne!(
                best_p.predictions[0].probabilities, last_p.predictions[0].probabilities,
                "{pick}: the best epoch's model is not the last one's"
            );
        }
    }
}
