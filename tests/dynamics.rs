//! Training dynamics through the real server: the learning rate actually used follows the
//! schedule, an absurd learning rate fails early with a clear message, early stopping
//! stops and keeps the best weights, and epochs carry per-layer diagnostics and the
//! generalization gap.

mod common;

use common::{
    TestServer, epochs, iterations, last_message, predicting_epoch, range_test, spec, statuses,
    succeeded_job, train,
};
use gradstream::transport::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_learning_rates_follow_the_schedule() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut s = spec(400, 2, 4);
    s.report_every = 1;
    s.learning_rate = 0.01;
    s.lr_schedule = Some(pb::LrSchedule {
        kind: Some(pb::lr_schedule::Kind::Step(pb::StepSchedule {
            step_size: 1,
            gamma: 0.5,
        })),
    });
    let events = train(&mut c, s).await;
    assert_eq!(statuses(&events).last(), Some(&pb::JobStatus::Succeeded));
    for p in iterations(&events) {
        let want = 0.01 * 0.5f64.powi(p.epoch as i32 - 1);
        assert!(
            (p.learning_rate - want).abs() < 1e-12,
            "epoch {} iteration {}: {} vs {want}",
            p.epoch,
            p.iteration,
            p.learning_rate
        );
    }
    // One-cycle changes the rate every iteration, up to learning_rate and back down.
    let mut s = spec(400, 2, 3);
    s.report_every = 1;
    s.learning_rate = 0.05;
    s.lr_schedule = Some(pb::LrSchedule {
        kind: Some(pb::lr_schedule::Kind::OneCycle(
            pb::OneCycleSchedule::default(),
        )),
    });
    let events = train(&mut c, s).await;
    let lrs: Vec<f64> = iterations(&events)
        .iter()
        .map(|p| p.learning_rate)
        .collect();
    let peak = lrs.iter().copied().fold(0.0, f64::max);
    assert!((peak - 0.05).abs() < 1e-3, "peak {peak}");
    assert!(
        lrs[0] < 0.05 / 20.0 && *lrs.last().unwrap() < 1e-5,
        "{lrs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_learning_rate_fails_with_the_reason() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut s = spec(2000, 3, 5);
    s.learning_rate = 50.0;
    s.optimizer = Some(pb::Optimizer {
        kind: pb::OptimizerKind::Sgd as i32,
        momentum: 0.9,
        ..Default::default()
    });
    let events = train(&mut c, s).await;
    assert_eq!(statuses(&events).last(), Some(&pb::JobStatus::Failed));
    let msg = last_message(&events);
    assert!(
        msg.contains("the learning rate (5e1) is likely too high"),
        "{msg}"
    );
    // Caught early: well before the end of the first epoch's 50 iterations.
    assert!(epochs(&events).is_empty(), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_stopping_stops_and_keeps_the_best_epoch() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    // A small, noisy problem and a large model: validation loss soon stops improving.
    let mut s = spec(200, 2, 60);
    common::synthetic(&mut s).separation = Some(0.3);
    s.model = common::mlp(vec![128, 128], pb::Activation::Relu, false, 0.0);
    s.learning_rate = 0.01;
    s.early_stopping = Some(pb::EarlyStopping {
        patience: 3,
        min_delta: 0.0,
    });
    let events = train(&mut c, s).await;
    assert_eq!(statuses(&events).last(), Some(&pb::JobStatus::Succeeded));
    let msg = last_message(&events);
    assert!(msg.starts_with("stopped early after epoch"), "{msg}");
    let ends = epochs(&events);
    assert!(ends.len() < 60, "stopped before the last epoch");
    let losses: Vec<f64> = ends
        .iter()
        .map(|e| e.validation.as_ref().unwrap().loss)
        .collect();
    let best = losses
        .iter()
        .enumerate()
        .fold(0, |b, (i, &l)| if l < losses[b] { i } else { b });
    // It stopped exactly `patience` epochs after the best one.
    assert_eq!(ends.len(), best + 1 + 3, "{losses:?}");
    assert!(
        msg.contains(&format!("the best epoch is {}", best + 1)),
        "{msg}"
    );
    let job = succeeded_job(&mut c, &events).await;
    assert_eq!(job.best_epoch as usize, best + 1);
    // The job's model is the best epoch's weights.
    assert_eq!(
        predicting_epoch(&mut c, &job.id, 8).await as usize,
        best + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_carry_layer_diagnostics_and_the_generalization_gap() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut s = spec(600, 3, 3);
    s.model = common::mlp(vec![16, 8], pb::Activation::Tanh, false, 0.0);
    s.gradient_clip_norm = Some(0.5);
    let events = train(&mut c, s).await;
    assert_eq!(statuses(&events).last(), Some(&pb::JobStatus::Succeeded));
    let ends = epochs(&events);
    for e in &ends {
        assert!(e.diagnostics_seconds > 0.0 && e.diagnostics_seconds < e.seconds);
        let names: Vec<&str> = e.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["hidden0", "hidden1", "head"]);
        for l in &e.layers[..2] {
            let sat = l.saturated_fraction.expect("tanh layers report saturation");
            assert!((0.0..=1.0).contains(&sat));
            assert!(l.dead_fraction.is_none());
            assert!(l.weight_norm > 0.0 && l.gradient_norm > 0.0 && l.update_ratio > 0.0);
            assert!(l.activation_std.unwrap() > 0.0);
        }
        let v = e.validation.as_ref().unwrap();
        let gap = e.generalization_gap.unwrap();
        assert!((gap - (v.loss - e.train.as_ref().unwrap().loss)).abs() < 1e-12);
    }
    // The overfitting hint is exactly "validation loss up, training loss down".
    for w in ends.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let up = b.validation.as_ref().unwrap().loss > a.validation.as_ref().unwrap().loss;
        let down = b.train.as_ref().unwrap().loss < a.train.as_ref().unwrap().loss;
        assert_eq!(b.overfitting, up && down);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_test_suggests_a_rate_that_a_diverging_job_then_quotes() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut s = spec(2000, 3, 5);
    s.optimizer = Some(pb::Optimizer {
        kind: pb::OptimizerKind::Sgd as i32,
        momentum: 0.9,
        ..Default::default()
    });
    let (points, r) = range_test(
        &mut c,
        pb::FindLearningRateRequest {
            spec: Some(s.clone()),
            min_lr: Some(1e-5),
            max_lr: Some(1e3),
            iterations: Some(150),
        },
    )
    .await;
    assert!(r.diverged, "a learning rate of 1000 diverges");
    assert_eq!(r.iterations as usize, points.len());
    assert!(points.len() < 150, "it stopped at the divergence");
    for w in points.windows(2) {
        let ratio = w[1].learning_rate / w[0].learning_rate;
        assert!((ratio - (1e8f64).powf(1.0 / 149.0)).abs() < 1e-9, "{ratio}");
    }
    assert!(
        r.suggested_learning_rate > 1e-5
            && r.suggested_learning_rate < r.min_loss_learning_rate * 1.0001
    );
    // The same spec with an absurd learning rate fails, quoting the suggestion.
    s.learning_rate = 50.0;
    let events = train(&mut c, s).await;
    assert_eq!(statuses(&events).last(), Some(&pb::JobStatus::Failed));
    let msg = last_message(&events);
    assert!(
        msg.contains(&format!(
            "a learning-rate range test on this spec suggested {:e}",
            r.suggested_learning_rate
        )),
        "{msg}"
    );
    // A bad spec is an RPC error, before any point.
    let err = c
        .find_learning_rate(pb::FindLearningRateRequest {
            spec: Some(spec(100, 2, 0)),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("spec.epochs"),
        "{}",
        err.message()
    );
}
