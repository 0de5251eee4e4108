//! Trained models through the real server: Predict, Evaluate (checked against
//! scikit-learn), ExportModel (loaded back in PyTorch), best-epoch selection, and the
//! curves in the epoch stream.

mod common;

use std::path::Path;

use common::rng::Rng;
use common::torchscript::{models_client, torchscript, torchscript_modules, upload_model};
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
    finished_job_events(c, s).await.1
}

/// Trains `s` to success; its events and the finished job.
async fn finished_job_events(
    c: &mut TrainerClient<Channel>,
    s: pb::JobSpec,
) -> (Vec<pb::JobEvent>, pb::Job) {
    let events = train(c, s).await;
    let job = common::succeeded_job(c, &events).await;
    (events, job)
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

    exports_match_predict(&mut c, &job, 1).await;
}

/// Exports the job's best model in both formats, loads them in PyTorch and checks they give
/// Predict's probabilities to 1e-5.
async fn exports_match_predict(c: &mut TrainerClient<Channel>, job: &pb::Job, members: usize) {
    exports_match_predict_with(c, job, members, &[]).await;
}

/// [`exports_match_predict`] for a model whose SAFETENSORS export also carries the trained
/// TorchScript module files `modules`.
async fn exports_match_predict_with(
    c: &mut TrainerClient<Channel>,
    job: &pb::Job,
    members: usize,
    modules: &[&str],
) {
    let rows = random_rows(7, 64, job.feature_names.len());
    let p = predict(c, &job.id, &rows, pb::ModelVersion::Best)
        .await
        .unwrap();
    assert_eq!(p.epoch, job.best_epoch);
    assert_eq!(p.labels, job.labels);
    assert_eq!(p.predictions.len(), rows.len());

    let dir = tempfile::tempdir().unwrap();
    let ts = export(c, &job.id, pb::ExportFormat::Torchscript, dir.path()).await;
    let st = export(c, &job.id, pb::ExportFormat::Safetensors, dir.path()).await;
    let names: Vec<&str> = ts.iter().chain(&st).map(|(n, _)| n.as_str()).collect();
    let mut want = vec!["model.pt", "model.safetensors"];
    want.extend(modules);
    want.push("model_card.json");
    assert_eq!(names, want);
    let card_path = &st.last().unwrap().1;
    let card: Value = serde_json::from_slice(&std::fs::read(card_path).unwrap()).unwrap();
    assert_eq!(card["epoch"], json!(job.best_epoch));
    assert_eq!(card["labels"], json!(job.labels));
    assert_eq!(card["features"], json!(job.feature_names));
    assert_eq!(card["architecture"]["members"], json!(members));
    assert_eq!(card["metrics"]["best_epoch"], json!(job.best_epoch));
    assert_eq!(card["metrics"]["ensemble"], json!(members > 1));
    if !modules.is_empty() {
        // The spec as trained, without the server's path to the uploaded file.
        let model = &card["training"]["model"]["TorchScript"];
        assert_eq!(model["file"], json!(""), "{model}");
        assert_eq!(
            model["parameters"].as_u64().unwrap() * members as u64,
            job.parameter_count
        );
    }

    let rows_path = dir.path().join("rows.json");
    std::fs::write(&rows_path, serde_json::to_vec(&rows).unwrap()).unwrap();
    let out_path = dir.path().join("out.json");
    run_reference(
        "check_export.py",
        &[&ts[0].1, &st[0].1, card_path, &rows_path, &out_path],
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
async fn a_cnn_trains_predicts_and_exports_to_pytorch() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut s = spec(600, 3, 3);
    common::synthetic(&mut s).features = 16;
    let block = |channels, batch_norm, pool| pb::ConvBlock {
        channels,
        kernel_size: 3,
        padding: 1,
        batch_norm,
        activation: pb::Activation::Relu as i32,
        pool: pool as i32,
        ..Default::default()
    };
    for gap in [false, true] {
        s.model = Some(pb::Model {
            kind: Some(pb::model::Kind::Cnn(pb::Cnn {
                channels: 1,
                height: 4,
                width: 4,
                blocks: vec![
                    block(8, true, pb::PoolKind::Max),
                    block(16, false, pb::PoolKind::Avg),
                ],
                global_average_pool: gap,
                dense: Some(pb::Mlp {
                    hidden_layers: vec![12],
                    activation: pb::Activation::Tanh as i32,
                    ..Default::default()
                }),
            })),
        });
        let job = finished_job(&mut c, s.clone()).await;
        // conv 1*8*9+8 + bn 16 + conv 8*16*9+16; flat 16 (1x1 map either way); dense 16*12+12;
        // head 12*3+3.
        assert_eq!(job.parameter_count, 80 + 16 + 1168 + 204 + 39);
        exports_match_predict(&mut c, &job, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensembles_predict_evaluate_and_export_as_one_model() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut s = spec(600, 2, 2);
    s.model = common::mlp(vec![12], pb::Activation::Relu, true, 0.0);
    s.ensemble = Some(pb::Ensemble {
        kind: pb::EnsembleKind::BalancedBagging as i32,
        members: 3,
    });
    let job = finished_job(&mut c, s).await;
    // The ensemble's own epoch (run 0's), the last members' epoch.
    assert_eq!((job.best_run, job.best_epoch), (0, 2));
    exports_match_predict(&mut c, &job, 3).await;
    let mut rng = Rng(9);
    let rows: Vec<(Vec<f32>, usize)> = random_rows(3, 100, 8)
        .into_iter()
        .map(|r| (r, rng.below(2)))
        .collect();
    check_evaluate_against_sklearn(&mut c, &job, &rows, Some(0.75)).await;
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

/// A float written by the reference script ("inf"/"nan" as strings).
fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        v => v.as_f64().unwrap_or_else(|| panic!("not a float: {v}")),
    }
}

#[track_caller]
fn close(what: &str, ours: f64, theirs: &Value) {
    let theirs = num(theirs);
    let ok = if ours.is_infinite() || theirs.is_infinite() {
        ours == theirs
    } else {
        (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0)
    };
    assert!(ok, "{what}: Evaluate {ours}, scikit-learn {theirs}");
}

#[track_caller]
fn all_close(what: &str, ours: &[f64], theirs: &Value) {
    let theirs = theirs.as_array().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        close(&format!("{what}[{i}]"), *a, b);
    }
}

#[track_caller]
fn opt_close(what: &str, ours: Option<f64>, theirs: &Value) {
    match ours {
        Some(v) => close(what, v, theirs),
        None => assert!(
            theirs.is_null(),
            "{what}: Evaluate has none, scikit-learn {theirs}"
        ),
    }
}

/// Evaluates `rows` through the RPC and checks every number against scikit-learn applied
/// to Predict's probabilities for the same rows.
async fn check_evaluate_against_sklearn(
    c: &mut TrainerClient<Channel>,
    job: &pb::Job,
    rows: &[(Vec<f32>, usize)],
    target_recall: Option<f64>,
) {
    let features: Vec<Vec<f32>> = rows.iter().map(|(r, _)| r.clone()).collect();
    let p = predict(c, &job.id, &features, pb::ModelVersion::Best)
        .await
        .unwrap();
    let e = c
        .evaluate(pb::EvaluateRequest {
            job_id: job.id.clone(),
            data: Some(pb::evaluate_request::Data::Rows(pb::LabeledRows {
                rows: rows
                    .iter()
                    .map(|(values, y)| pb::LabeledRow {
                        values: values.clone(),
                        label: job.labels[*y].clone(),
                    })
                    .collect(),
            })),
            model: pb::ModelVersion::Best as i32,
            target_recall,
            positive_label: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.epoch, p.epoch);
    assert_eq!(e.rows, rows.len() as u64);

    let dir = tempfile::tempdir().unwrap();
    let case = json!({"cases": [{
        "k": job.labels.len(),
        "actual": rows.iter().map(|(_, y)| *y).collect::<Vec<_>>(),
        "probs": p.predictions.iter()
            .map(|q| q.probabilities.iter().map(|&v| f64::from(v)).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        "target_recall": target_recall,
    }]});
    let input = dir.path().join("case.json");
    let output = dir.path().join("sklearn.json");
    std::fs::write(&input, case.to_string()).unwrap();
    run_reference("sklearn_metrics.py", &[&input, &output]);
    let out: Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let sk = &out["results"][0];

    let m = e.metrics.as_ref().unwrap();
    close("accuracy", m.accuracy, &sk["accuracy"]);
    assert_eq!(
        json!(m.confusion_matrix.as_ref().unwrap().counts),
        sk["confusion_matrix"]
    );
    for (c, pc) in m.per_class.iter().enumerate() {
        close(
            &format!("precision[{c}]"),
            pc.precision,
            &sk["precision"][c],
        );
        close(&format!("recall[{c}]"), pc.recall, &sk["recall"][c]);
        close(&format!("f1[{c}]"), pc.f1, &sk["f1"][c]);
        opt_close(
            &format!("roc_auc[{c}]"),
            pc.roc_auc,
            &sk["per_class"][c]["roc_auc"],
        );
    }
    let avg = |a: &Option<pb::Averages>| {
        let a = a.unwrap();
        [a.precision, a.recall, a.f1]
    };
    all_close("macro", &avg(&m.r#macro), &sk["macro"]);
    all_close("weighted", &avg(&m.weighted), &sk["weighted"]);
    opt_close(
        "average_precision",
        m.average_precision,
        &sk["macro_average_precision"],
    );
    opt_close(
        "balanced_accuracy",
        e.balanced_accuracy,
        &sk["balanced_accuracy"],
    );
    opt_close("matthews_corrcoef", e.matthews_corrcoef, &sk["mcc"]);
    opt_close("log_loss", e.log_loss, &sk["log_loss"]);
    opt_close("brier_score", e.brier_score, &sk["brier"]);
    assert_eq!(m.curves.len(), job.labels.len());
    for (c, cc) in m.curves.iter().enumerate() {
        let theirs = &sk["per_class"][c];
        assert_eq!(cc.label, job.labels[c]);
        match (&cc.roc, theirs["roc"].is_null()) {
            (Some(r), false) => {
                all_close(&format!("roc[{c}].fpr"), &r.fpr, &theirs["roc"]["fpr"]);
                all_close(&format!("roc[{c}].tpr"), &r.tpr, &theirs["roc"]["tpr"]);
                all_close(
                    &format!("roc[{c}].thresholds"),
                    &r.thresholds,
                    &theirs["roc"]["thresholds"],
                );
            }
            (None, true) => {}
            (ours, _) => panic!(
                "roc[{c}]: Evaluate {ours:?}, scikit-learn {}",
                theirs["roc"]
            ),
        }
        match (&cc.pr, theirs["pr"].is_null()) {
            (Some(p), false) => {
                all_close(
                    &format!("pr[{c}].precision"),
                    &p.precision,
                    &theirs["pr"]["precision"],
                );
                all_close(
                    &format!("pr[{c}].recall"),
                    &p.recall,
                    &theirs["pr"]["recall"],
                );
                all_close(
                    &format!("pr[{c}].thresholds"),
                    &p.thresholds,
                    &theirs["pr"]["thresholds"],
                );
                close(
                    &format!("pr[{c}].ap"),
                    p.average_precision,
                    &theirs["pr"]["average_precision"],
                );
            }
            (None, true) => {}
            (ours, _) => panic!("pr[{c}]: Evaluate {ours:?}, scikit-learn {}", theirs["pr"]),
        }
    }
    let report = &sk["threshold_report"];
    match &e.threshold_report {
        None => assert!(report.is_null(), "a binary job gets a threshold report"),
        Some(t) => {
            assert_eq!(t.positive_label, job.labels[1]);
            for (name, ours, theirs) in [
                ("best_f1", &t.best_f1, &report["best_f1"]),
                (
                    "target_recall",
                    &t.target_recall,
                    &report["at_target_recall"],
                ),
            ] {
                let Some(p) = ours else {
                    assert!(theirs.is_null(), "{name}: missing, scikit-learn {theirs}");
                    continue;
                };
                close(
                    &format!("{name}.threshold"),
                    p.threshold,
                    &theirs["threshold"],
                );
                close(
                    &format!("{name}.precision"),
                    p.precision,
                    &theirs["precision"],
                );
                close(&format!("{name}.recall"), p.recall, &theirs["recall"]);
                close(&format!("{name}.f1"), p.f1, &theirs["f1"]);
                assert_eq!(
                    json!(p.confusion_matrix.as_ref().unwrap().counts),
                    theirs["confusion"],
                    "{name}: confusion"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_equals_scikit_learn_on_predicts_probabilities() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut rng = Rng(42);
    for classes in [2u32, 4] {
        let job = finished_job(&mut c, spec(500, classes, 3)).await;
        let k = classes as usize;
        // Random rows and labels, a class left out, and a few exact repeats (tied scores).
        let mut rows: Vec<(Vec<f32>, usize)> = random_rows(classes.into(), 150, 8)
            .into_iter()
            .map(|r| (r, rng.below(k - 1)))
            .collect();
        for i in 0..20 {
            let repeat = rows[i].clone();
            rows.push(repeat);
        }
        check_evaluate_against_sklearn(&mut c, &job, &rows, (k == 2).then_some(0.9)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_reads_datasets_and_names_what_is_wrong() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut csv = String::from("a,b,label\n");
    let mut rng = Rng(5);
    for i in 0..120 {
        let y = i % 2;
        let (a, b) = (rng.unit() + y as f64, rng.unit() - y as f64);
        csv.push_str(&format!("{a},{b},{}\n", ["no", "yes"][y]));
    }
    server.write_csv("train.csv", &csv);
    let mut s = common::csv_spec("train.csv", "");
    s.epochs = 2;
    let job = finished_job(&mut c, s).await;
    assert_eq!(job.feature_names, ["a", "b"]);
    let evaluate =
        |data: pb::evaluate_request::Data, target_recall: Option<f64>| pb::EvaluateRequest {
            job_id: job.id.clone(),
            data: Some(data),
            model: 0,
            target_recall,
            positive_label: String::new(),
        };
    use pb::evaluate_request::Data;
    let csv_data = |path: &str| {
        Data::Csv(pb::CsvDataset {
            path: path.into(),
            label_column: String::new(),
        })
    };
    // The training file itself, as a CSV path: every row evaluated.
    let e = c
        .evaluate(evaluate(csv_data("train.csv"), Some(0.5)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.rows, 120);
    let report = e.threshold_report.unwrap();
    assert_eq!(report.positive_label, "yes");
    assert!(report.target_recall.unwrap().recall >= 0.5);
    // The report about the other class: its recall is counted on the "no" rows.
    let mut req = evaluate(csv_data("train.csv"), Some(0.5));
    req.positive_label = "no".into();
    let e = c.evaluate(req.clone()).await.unwrap().into_inner();
    let report = e.threshold_report.unwrap();
    assert_eq!(report.positive_label, "no");
    let best = report.best_f1.unwrap();
    let cm = best.confusion_matrix.unwrap();
    assert_eq!(cm.labels, ["yes", "no"]);
    let [_, fp, fn_, tp] = cm.counts[..] else {
        panic!("{cm:?}")
    };
    assert_eq!(fn_ + tp, 60, "the 60 'no' rows are the positives");
    assert!((best.recall - tp as f64 / 60.0).abs() < 1e-12);
    assert!((best.precision - tp as f64 / (tp + fp) as f64).abs() < 1e-12);
    req.positive_label = "maybe".into();
    let err = c.evaluate(req).await.unwrap_err();
    assert!(
        err.message().starts_with("positive_label: 'maybe'"),
        "{}",
        err.message()
    );

    // A label the job never saw, in a file with only one class.
    server.write_csv("other.csv", "a,b,label\n0.1,0.2,maybe\n");
    let err = c
        .evaluate(evaluate(csv_data("other.csv"), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("'maybe' is not one of the job's labels (no, yes)"),
        "{}",
        err.message()
    );
    // Columns that are not the model's.
    server.write_csv("cols.csv", "b,a,label\n0.1,0.2,no\n");
    let err = c
        .evaluate(evaluate(csv_data("cols.csv"), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("(b, a) are not the model's (a, b)"),
        "{}",
        err.message()
    );
    // A malformed file is named with line and column.
    server.write_csv("bad.csv", "a,b,label\n0.1,zz,no\n");
    let err = c
        .evaluate(evaluate(csv_data("bad.csv"), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("bad.csv:2:2"), "{}", err.message());
    // Inline rows: a wrong label is named by its row.
    let rows = Data::Rows(pb::LabeledRows {
        rows: vec![
            pb::LabeledRow {
                values: vec![0.0, 1.0],
                label: "no".into(),
            },
            pb::LabeledRow {
                values: vec![0.0, 1.0],
                label: "perhaps".into(),
            },
        ],
    });
    let err = c.evaluate(evaluate(rows, None)).await.unwrap_err();
    assert!(
        err.message().contains("rows.rows[1].label"),
        "{}",
        err.message()
    );
    // A recall that is not one.
    let err = c
        .evaluate(evaluate(csv_data("train.csv"), Some(1.5)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("target_recall:"),
        "{}",
        err.message()
    );
    // No data at all.
    let mut req = evaluate(csv_data("train.csv"), None);
    req.data = None;
    let err = c.evaluate(req).await.unwrap_err();
    assert!(
        err.message().starts_with("data: is required"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_events_carry_downsampled_validation_curves() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    // 1,500 validation rows: more distinct scores than the 200-point budget.
    let mut s = spec(5_000, 3, 2);
    s.validation_fraction = Some(0.3);
    let events = train(&mut c, s).await;
    for end in epochs(&events) {
        let v = end.validation.unwrap();
        assert!(v.average_precision.is_some());
        assert_eq!(v.curves.len(), 3);
        for cc in &v.curves {
            let roc = cc.roc.as_ref().unwrap();
            let pr = cc.pr.as_ref().unwrap();
            assert!(roc.fpr.len() <= 200 && roc.fpr.len() == roc.tpr.len());
            assert!(pr.precision.len() <= 200 && pr.thresholds.len() + 1 == pr.precision.len());
            assert!(
                pr.precision.len() > 100,
                "a long curve keeps close to 200 points"
            );
            // The ends of the curves are kept.
            assert_eq!((roc.fpr[0], roc.tpr[0]), (0.0, 0.0));
            assert_eq!(
                (*roc.fpr.last().unwrap(), *roc.tpr.last().unwrap()),
                (1.0, 1.0)
            );
            assert_eq!(
                (*pr.recall.last().unwrap(), *pr.precision.last().unwrap()),
                (0.0, 1.0)
            );
            assert_eq!(pr.recall[0], 1.0);
        }
        // Training metrics carry no curves when there is a validation split.
        assert!(end.train.unwrap().curves.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torchscript_module_made_in_pytorch_trains_predicts_and_exports() {
    let (dir, info) = torchscript_modules();
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut m = models_client(server.url()).await;

    let uploaded = upload_model(&mut m, &dir.path().join("mlp.pt"), None)
        .await
        .unwrap();
    let want = info["mlp.pt"]["parameters"].as_array().unwrap();
    let got: Vec<Value> = uploaded
        .parameters
        .iter()
        .map(|p| json!([p.name, p.shape, p.requires_grad]))
        .collect();
    assert_eq!(&got, want);
    let count: i64 = want
        .iter()
        .map(|p| {
            p[1].as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .product::<i64>()
        })
        .sum();
    assert_eq!(uploaded.parameter_count, count as u64);
    let listed = m
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.models, vec![uploaded.clone()]);

    // Every other spec field works as for built-in models: class weights, a schedule,
    // clipping, the best epoch by macro F1, diagnostics.
    let mut s = spec(600, 3, 5);
    s.model = torchscript(&uploaded.id, vec![]);
    s.class_weighting = pb::ClassWeighting::Balanced as i32;
    s.gradient_clip_norm = Some(5.0);
    s.best_model_metric = pb::ModelSelectionMetric::MacroF1 as i32;
    s.lr_schedule = Some(pb::LrSchedule {
        kind: Some(pb::lr_schedule::Kind::Step(pb::StepSchedule {
            step_size: 2,
            gamma: 0.5,
        })),
    });
    let (events, job) = finished_job_events(&mut c, s).await;
    assert_eq!(job.parameter_count, count as u64);
    assert_eq!(job.class_weights.len(), 3);
    let ends = epochs(&events);
    assert_eq!(ends.len(), 5);
    let best = &ends[job.best_epoch as usize - 1];
    let accuracy = best.validation.as_ref().unwrap().accuracy;
    assert!(accuracy > 0.85, "validation accuracy {accuracy}");
    // Loss falls: the module's parameters are really trained.
    let first = ends[0].train.as_ref().unwrap().loss;
    let last = ends[4].train.as_ref().unwrap().loss;
    assert!(last < first, "training loss {first} -> {last}");
    // Diagnostics: one entry per weight matrix, named after the module's layers.
    let layers: Vec<&str> = ends[4].layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(layers, ["fc1", "fc2"]);
    for l in &ends[4].layers {
        assert!(l.weight_norm > 0.0 && l.gradient_norm > 0.0 && l.update_ratio > 0.0);
        assert_eq!(l.activation_mean, None);
    }
    let lrs: Vec<f64> = common::iterations(&events)
        .iter()
        .filter(|p| p.iteration == p.iterations_per_epoch)
        .map(|p| p.learning_rate)
        .collect();
    assert_eq!(lrs, [0.01, 0.01, 0.005, 0.005, 0.0025]);

    exports_match_predict_with(&mut c, &job, 1, &["module.pt"]).await;

    // Evaluate: the predicted class of each row as its label gives accuracy 1.
    let rows = random_rows(3, 50, 8);
    let p = predict(&mut c, &job.id, &rows, pb::ModelVersion::Best)
        .await
        .unwrap();
    let labeled = rows
        .iter()
        .zip(&p.predictions)
        .map(|(r, q)| pb::LabeledRow {
            values: r.clone(),
            label: q.label.clone(),
        })
        .collect();
    let e = c
        .evaluate(pb::EvaluateRequest {
            job_id: job.id.clone(),
            data: Some(pb::evaluate_request::Data::Rows(pb::LabeledRows {
                rows: labeled,
            })),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.rows, 50);
    assert_eq!(e.metrics.unwrap().accuracy, 1.0);

    // The range test trains the uploaded module from scratch too.
    let mut s = spec(600, 3, 1);
    s.model = torchscript(&uploaded.id, vec![]);
    let mut stream = c
        .find_learning_rate(pb::FindLearningRateRequest {
            spec: Some(s),
            min_lr: Some(1e-5),
            max_lr: Some(10.0),
            iterations: Some(40),
        })
        .await
        .unwrap()
        .into_inner();
    let mut points = 0;
    let mut suggested = None;
    while let Some(e) = stream.message().await.unwrap() {
        match e.kind.unwrap() {
            pb::lr_finder_event::Kind::Point(_) => points += 1,
            pb::lr_finder_event::Kind::Result(r) => suggested = Some(r.suggested_learning_rate),
        }
    }
    assert!(
        points > 0 && suggested.unwrap() > 0.0,
        "{points} {suggested:?}"
    );

    // The upload is protected only while a job needs it; the trained job keeps its model.
    m.delete_model(pb::DeleteModelRequest {
        model_id: uploaded.id.clone(),
    })
    .await
    .unwrap();
    let err = m
        .get_model(pb::GetModelRequest {
            model_id: uploaded.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    predict(
        &mut c,
        &job.id,
        &random_rows(1, 3, 8),
        pb::ModelVersion::Last,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torchscript_cnns_and_ensembles_train_with_input_shape() {
    let (dir, _) = torchscript_modules();
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut m = models_client(server.url()).await;
    let cnn = upload_model(&mut m, &dir.path().join("cnn.pt"), None)
        .await
        .unwrap();
    let mut s = spec(600, 3, 2);
    common::synthetic(&mut s).features = 64;
    s.model = torchscript(&cnn.id, vec![1, 8, 8]);
    let job = finished_job(&mut c, s.clone()).await;
    exports_match_predict_with(&mut c, &job, 1, &["module.pt"]).await;

    // Without input_shape, the rows do not fit a Conv2d: refused at submit.
    s.model = torchscript(&cnn.id, vec![]);
    let err = c.submit_job(common::request(s.clone())).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let msg = err.message();
    assert!(
        msg.starts_with("spec.model.torchscript:")
            && msg.contains("[2, 64]")
            && msg.contains("set input_shape"),
        "{msg}"
    );
    s.model = torchscript(&cnn.id, vec![1, 4, 4]);
    let err = c.submit_job(common::request(s)).await.unwrap_err();
    assert!(
        err.message().contains("spec.model.torchscript.input_shape")
            && err.message().contains("64"),
        "{}",
        err.message()
    );

    // Balanced bagging of a traced module: each member's trained module is exported.
    let traced = upload_model(&mut m, &dir.path().join("traced.pt"), None)
        .await
        .unwrap();
    let mut s = spec(400, 3, 2);
    s.model = torchscript(&traced.id, vec![]);
    s.ensemble = Some(pb::Ensemble {
        kind: pb::EnsembleKind::BalancedBagging as i32,
        members: 2,
    });
    let job = finished_job(&mut c, s).await;
    assert_eq!((job.best_run, job.best_epoch), (0, 2));
    exports_match_predict_with(&mut c, &job, 2, &["module-member0.pt", "module-member1.pt"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torchscript_uploads_and_modules_that_do_not_fit_are_refused_clearly() {
    let (dir, _) = torchscript_modules();
    let server = TestServer::start_with(|c| c.max_model_bytes = 200_000).await;
    let mut c = server.client().await;
    let mut m = models_client(server.url()).await;
    let refused = |name: &'static str, sha: Option<&'static str>| {
        let path = dir.path().join(name);
        let mut m = m.clone();
        async move { upload_model(&mut m, &path, sha).await.unwrap_err() }
    };
    let e = refused("state_dict.pt", None).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .starts_with("model upload: the file is not a TorchScript module"),
        "{}",
        e.message()
    );
    let e = refused("frozen.pt", None).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("no trainable parameter"),
        "{}",
        e.message()
    );
    let e = refused("mlp.pt", Some("00ff")).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("announced 00ff"), "{}", e.message());
    // Larger than --max-model-bytes.
    let big = dir.path().join("big.pt");
    std::fs::write(&big, vec![0u8; 300_000]).unwrap();
    let e = upload_model(&mut m, &big, None).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("--max-model-bytes"), "{}", e.message());
    // Nothing of the refused uploads is kept.
    let listed = m
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.models.is_empty());
    let tmp = server.state_path().join("models/tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(server.state_path().join("models"))
            .unwrap()
            .count(),
        1,
        "only tmp/"
    );

    // Modules that load but do not fit the data: INVALID_ARGUMENT naming the shapes.
    let wrong_out = upload_model(&mut m, &dir.path().join("wrong_out.pt"), None)
        .await
        .unwrap();
    let mut s = spec(200, 3, 1);
    s.model = torchscript(&wrong_out.id, vec![]);
    let e = c.submit_job(common::request(s.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("spec.model.torchscript:")
            && e.message().contains("returned shape [2, 5]")
            && e.message().contains("expected [2, 3]"),
        "{}",
        e.message()
    );
    let wrong_in = upload_model(&mut m, &dir.path().join("wrong_in.pt"), None)
        .await
        .unwrap();
    s.model = torchscript(&wrong_in.id, vec![]);
    let e = c.submit_job(common::request(s.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("[2, 8]")
            && e.message()
                .contains("mat1 and mat2 shapes cannot be multiplied (2x8 and 5x32)"),
        "{}",
        e.message()
    );
    s.model = torchscript("no-such-model", vec![]);
    let e = c.submit_job(common::request(s.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .starts_with("spec.model.torchscript.model_id: no model with id 'no-such-model'"),
        "{}",
        e.message()
    );
    let listed = c
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.jobs.is_empty(), "nothing was queued");

    // A model in use by a running job cannot be deleted.
    let mlp = upload_model(&mut m, &dir.path().join("mlp.pt"), None)
        .await
        .unwrap();
    let mut long = spec(20_000, 3, 500);
    long.model = torchscript(&mlp.id, vec![]);
    // The module has batch norm: a last batch of one row is refused, as for built-in ones.
    let e = c
        .submit_job(common::request(long.clone()))
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with(
            "spec.batch_size: the TorchScript module fails on a training batch of one row"
        ),
        "{}",
        e.message()
    );
    long.batch_size = 30;
    let job = c
        .submit_job(common::request(long))
        .await
        .unwrap()
        .into_inner();
    let e = m
        .delete_model(pb::DeleteModelRequest {
            model_id: mlp.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains(&job.id), "{}", e.message());
    c.cancel_job(pb::CancelJobRequest {
        job_id: job.id.clone(),
    })
    .await
    .unwrap();
    common::watch(&mut c, &job.id, 0).await;
    m.delete_model(pb::DeleteModelRequest { model_id: mlp.id })
        .await
        .unwrap();
}
