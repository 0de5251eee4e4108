//! Class imbalance remedies through the real server: weights as scikit-learn computes
//! them and reported at the start, resampling of the training split only, balanced-bagging
//! ensembles of K members, and focal loss.

mod common;

use common::{
    TestServer, epochs, iterations, predicting_epoch, run_reference, succeeded_job, train,
};
use gradstream::transport::pb;

/// A skewed binary job: 9 of 10 rows in class 0.
fn skewed(samples: u32, epochs: u32) -> pb::JobSpec {
    let mut s = common::spec(samples, 2, epochs);
    common::synthetic(&mut s).class_ratios = vec![0.9, 0.1];
    s
}

fn running_messages(events: &[pb::JobEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(pb::job_event::Kind::Status(s)) if s.status == pb::JobStatus::Running as i32 => {
                Some(s.message.clone())
            }
            _ => None,
        })
        .collect()
}

fn supports(m: &pb::Metrics) -> Vec<u64> {
    m.per_class.iter().map(|c| c.support).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn computed_class_weights_are_scikit_learns_and_reported_at_the_start() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut s = skewed(1000, 1);
    s.class_weighting = pb::ClassWeighting::Balanced as i32;
    let events = train(&mut c, s).await;
    let job = succeeded_job(&mut c, &events).await;
    assert_eq!(job.train_class_counts, [720, 80]);
    assert_eq!(job.resampled_class_counts, job.train_class_counts);
    let running = running_messages(&events);
    assert_eq!(running.len(), 2, "{running:?}");
    assert!(
        running[1].starts_with("class weights (BALANCED): 0=0.5556, 1=5.0000"),
        "{}",
        running[1]
    );

    // scikit-learn's compute_class_weight("balanced") on the training labels.
    let dir = tempfile::tempdir().unwrap();
    let labels: Vec<usize> = job
        .train_class_counts
        .iter()
        .enumerate()
        .flat_map(|(c, &n)| std::iter::repeat_n(c, n as usize))
        .collect();
    let input = dir.path().join("labels.json");
    let output = dir.path().join("weights.json");
    std::fs::write(&input, serde_json::to_vec(&[labels]).unwrap()).unwrap();
    run_reference("class_weights.py", &[&input, &output]);
    let out: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let want: Vec<f64> = out["weights"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(job.class_weights.len(), 2);
    for (got, want) in job.class_weights.iter().zip(&want) {
        assert!((got - want).abs() < 1e-12, "{got} vs scikit-learn {want}");
    }

    // Effective number: (1 - beta) / (1 - beta^n), scaled to sum to the number of classes.
    let mut s = skewed(1000, 1);
    s.class_weighting = pb::ClassWeighting::EffectiveNumber as i32;
    s.effective_number_beta = Some(0.99);
    let events = train(&mut c, s).await;
    let job = succeeded_job(&mut c, &events).await;
    let raw: Vec<f64> = [720f64, 80.0]
        .iter()
        .map(|&n| (1.0 - 0.99) / (1.0 - 0.99f64.powf(n)))
        .collect();
    let total: f64 = raw.iter().sum();
    for (got, r) in job.class_weights.iter().zip(&raw) {
        assert!((got - r * 2.0 / total).abs() < 1e-12, "{got}");
    }
    // The weighted loss is what training reports: unweighted and weighted runs differ.
    assert!(job.class_weights[1] > job.class_weights[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resampling_changes_the_training_split_only() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let plain = train(&mut c, skewed(1000, 2)).await;
    let plain_job = succeeded_job(&mut c, &plain).await;
    let held_out: Vec<u64> = epochs(&plain)[0].validation.as_ref().map(supports).unwrap();
    assert_eq!(held_out, [180, 20]);

    for (method, per_epoch, want) in [
        (pb::ResamplingMethod::Smote, false, [720u64, 720]),
        (pb::ResamplingMethod::RandomOversample, true, [720, 720]),
        (pb::ResamplingMethod::RandomUndersample, true, [80, 80]),
    ] {
        let mut s = skewed(1000, 2);
        s.resampling = Some(pb::Resampling {
            method: method as i32,
            ratio: Some(1.0),
            k_neighbors: Some(5),
            per_epoch,
        });
        let events = train(&mut c, s).await;
        let job = succeeded_job(&mut c, &events).await;
        assert_eq!(job.train_class_counts, plain_job.train_class_counts);
        assert_eq!(job.resampled_class_counts, want, "{method:?}");
        assert_eq!(job.train_samples, want.iter().sum::<u64>());
        let running = running_messages(&events);
        assert!(
            running[1].contains("training rows per class 0:720 1:80 -> "),
            "{running:?}"
        );
        for end in epochs(&events) {
            // Training metrics cover the resampled rows; validation is the same held-out
            // rows as without resampling: no synthetic or duplicated row reaches it.
            assert_eq!(supports(end.train.as_ref().unwrap()), want, "{method:?}");
            assert_eq!(
                supports(end.validation.as_ref().unwrap()),
                held_out,
                "{method:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balanced_bagging_trains_k_members_then_reports_the_ensemble() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut s = skewed(1000, 2);
    s.ensemble = Some(pb::Ensemble {
        kind: pb::EnsembleKind::BalancedBagging as i32,
        members: 3,
    });
    let events = train(&mut c, s).await;
    let job = succeeded_job(&mut c, &events).await;
    // Every member draws all 80 minority rows and 80 of the majority.
    assert_eq!(job.resampled_class_counts, [80, 80]);
    let ends = epochs(&events);
    let members: Vec<(Option<u32>, u32, bool)> = ends
        .iter()
        .map(|e| (e.member, e.epoch, e.ensemble))
        .collect();
    assert_eq!(
        members,
        [
            (Some(0), 1, false),
            (Some(0), 2, false),
            (Some(1), 1, false),
            (Some(1), 2, false),
            (Some(2), 1, false),
            (Some(2), 2, false),
            (None, 2, true),
        ]
    );
    for e in &ends[..6] {
        assert_eq!(supports(e.train.as_ref().unwrap()), [80, 80]);
    }
    // The members differ (their draws and their initial weights).
    let val_loss = |e: &pb::EpochEnd| e.validation.as_ref().unwrap().loss;
    assert_ne!(val_loss(&ends[1]), val_loss(&ends[3]));
    let ensemble = ends.last().unwrap();
    assert_eq!(supports(ensemble.validation.as_ref().unwrap()), [180, 20]);
    assert_eq!(supports(ensemble.train.as_ref().unwrap()), [720, 80]);
    let its = iterations(&events);
    for m in 0..3 {
        assert!(
            its.iter().any(|p| p.member == Some(m)),
            "member {m} progress"
        );
    }
    // Every member is a run of the job (member m is run m + 1, each counting its own
    // epochs); the ensemble's metrics, and every status, are the job's own run 0.
    for e in &events {
        match &e.kind {
            Some(pb::job_event::Kind::Epoch(x)) => {
                assert_eq!(x.member.map_or(0, |m| m + 1), e.run, "epoch {x:?}")
            }
            Some(pb::job_event::Kind::Iteration(p)) => {
                assert_eq!(p.member.map(|m| m + 1), Some(e.run))
            }
            _ => assert_eq!(e.run, 0, "seq {}", e.seq),
        }
    }
    // The job's model is the ensemble: run 0's epoch 2. Its members' six epochs count.
    assert_eq!((job.best_run, job.best_epoch), (0, 2));
    assert_eq!(ensemble.best_epoch, 2);
    assert_eq!(job.epochs_completed, 6);
    assert_eq!(predicting_epoch(&mut c, &job.id, 8).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn focal_loss_trains_and_says_so() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let mut s = skewed(1000, 2);
    s.loss = Some(pb::Loss {
        kind: pb::LossKind::Focal as i32,
        gamma: Some(2.0),
    });
    s.class_weights = vec![1.0, 4.0];
    let events = train(&mut c, s).await;
    succeeded_job(&mut c, &events).await;
    let running = running_messages(&events);
    assert!(
        running[1].contains("class weights (MANUAL): 0=1.0000, 1=4.0000")
            && running[1].contains("focal loss (gamma 2)"),
        "{running:?}"
    );
    // The reported losses are the focal loss (engine unit tests check its value).
    let ends = epochs(&events);
    assert_eq!(ends.len(), 2);
    assert!(
        ends.iter()
            .all(|e| e.train.as_ref().unwrap().loss.is_finite())
    );
}
