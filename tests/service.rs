//! End-to-end tests: the real server on 127.0.0.1:0, driven through the generated client.

mod common;

use common::*;
use gradstream::transport::pb::{self, job_event::Kind};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_job_streams_status_progress_and_metrics_in_order() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let mut s = spec(1000, 3, 3);
    s.report_every = 5;
    let events = train(&mut c, s).await;
    assert_gap_free(&events);
    use pb::JobStatus::*;
    assert_eq!(statuses(&events), vec![Queued, Running, Succeeded]);
    let job_id = events[0].job_id.clone();
    assert!(
        events
            .iter()
            .all(|e| e.job_id == job_id && e.time.is_some())
    );

    // 1000 samples = 334+333+333; 20% of each class, rounded (67+67+67), held out → 799 train → 25 batches of 32.
    let its = iterations(&events);
    assert!(its.iter().all(|p| p.iterations_per_epoch == 25));
    let reported: Vec<(u32, u32)> = its.iter().map(|p| (p.epoch, p.iteration)).collect();
    let want: Vec<(u32, u32)> = (1..=3)
        .flat_map(|e| [5, 10, 15, 20, 25].map(|i| (e, i)))
        .collect();
    assert_eq!(
        reported, want,
        "a report every 5 iterations, epochs and iterations from 1"
    );
    assert_eq!(its.last().unwrap().global_step, 75);
    assert!(
        its.iter()
            .all(|p| p.loss.is_finite() && p.loss > 0.0 && p.learning_rate == 0.01)
    );
    assert!(its.iter().all(|p| p.samples_per_second > 0.0));

    let eps = epochs(&events);
    assert_eq!(
        eps.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    for e in &eps {
        let train = e.train.as_ref().unwrap();
        let val = e.validation.as_ref().unwrap();
        let cm = val.confusion_matrix.as_ref().unwrap();
        assert_eq!(cm.labels, vec!["0", "1", "2"]);
        assert_eq!(cm.counts.len(), 9);
        assert_eq!(
            cm.counts.iter().sum::<u64>(),
            201,
            "every validation sample counted once"
        );
        assert_eq!(
            train
                .confusion_matrix
                .as_ref()
                .unwrap()
                .counts
                .iter()
                .sum::<u64>(),
            799
        );
        assert_eq!(val.per_class.iter().map(|c| c.support).sum::<u64>(), 201);
        // Accuracy agrees with the matrix's diagonal.
        let diag: u64 = (0..3).map(|i| cm.counts[i * 3 + i]).sum();
        assert!((val.accuracy - diag as f64 / 201.0).abs() < 1e-12);
        assert!(val.roc_auc.unwrap() > 0.5 && val.per_class.iter().all(|c| c.roc_auc.is_some()));
        assert!(e.seconds > 0.0);
    }
    // It learns: the validation loss falls and accuracy beats chance by far.
    let first = eps[0].validation.as_ref().unwrap();
    let last = eps[2].validation.as_ref().unwrap();
    assert!(
        last.loss < first.loss,
        "validation loss {} -> {}",
        first.loss,
        last.loss
    );
    assert!(last.accuracy > 0.8, "accuracy {}", last.accuracy);

    let job = c
        .get_job(pb::GetJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status, Succeeded as i32);
    assert_eq!(job.epochs_completed, 3);
    assert_eq!(job.parameter_count, 8 * 16 + 16 + 16 * 3 + 3);
    assert_eq!((job.train_samples, job.validation_samples), (799, 201));
    assert_eq!(job.labels, vec!["0", "1", "2"]);
    assert_eq!(job.device, "cpu");
    assert!(job.created.is_some() && job.started.is_some() && job.finished.is_some());
    assert_eq!(job.last_epoch.as_ref(), eps.last());
    assert_eq!(job.spec.as_ref().unwrap().epochs, 3);

    let listed = list_jobs(&mut c).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, job_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_concurrent_watchers_see_the_same_history() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let mut s = spec(2000, 2, 4);
    s.report_every = 1;
    let mut live = c.train(request(s)).await.unwrap().into_inner();
    // Read the live stream until the first epoch has ended: the job is certainly running.
    let mut seen = Vec::new();
    while let Some(e) = live.message().await.unwrap() {
        let done = matches!(e.kind, Some(Kind::Epoch(_)));
        seen.push(e);
        if done {
            break;
        }
    }
    let job_id = seen[0].job_id.clone();
    // Watchers joining mid-run, several at once, and one from a later seq.
    let mut handles = Vec::new();
    for _ in 0..6 {
        let mut c = ts.client().await;
        let id = job_id.clone();
        handles.push(tokio::spawn(async move { watch(&mut c, &id, 0).await }));
    }
    let mut c2 = ts.client().await;
    let id = job_id.clone();
    let from_ten = tokio::spawn(async move { watch(&mut c2, &id, 10).await });
    seen.extend(collect(live).await);
    assert_gap_free(&seen);
    assert_eq!(statuses(&seen).last(), Some(&pb::JobStatus::Succeeded));
    for h in handles {
        assert_eq!(
            h.await.unwrap(),
            seen,
            "a mid-run watcher sees the full history once, in order"
        );
    }
    assert_eq!(from_ten.await.unwrap(), seen[9..].to_vec());
    // A watcher after the end gets the identical history and the stream ends.
    assert_eq!(watch(&mut c, &job_id, 1).await, seen);
    // from_seq past the end: nothing, and the stream still ends.
    assert!(
        watch(&mut c, &job_id, seen.len() as u64 + 1)
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_and_a_queued_one() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let mut long = spec(4000, 2, 1000);
    long.report_every = 1;
    let mut running = c.train(request(long)).await.unwrap().into_inner();
    let first = running.message().await.unwrap().unwrap();
    let running_id = first.job_id.clone();
    let queued = c
        .submit_job(request(spec(100, 2, 1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queued.status, pb::JobStatus::Queued as i32);

    // Cancelling the queued job ends it at once, without it ever running.
    let q = c
        .cancel_job(pb::CancelJobRequest {
            job_id: queued.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q.status, pb::JobStatus::Cancelled as i32);
    let q_events = watch(&mut c, &queued.id, 1).await;
    assert_eq!(
        statuses(&q_events),
        vec![pb::JobStatus::Queued, pb::JobStatus::Cancelled]
    );

    // Wait until the long job reports an iteration, then cancel it.
    let mut events = vec![first];
    while let Some(e) = running.message().await.unwrap() {
        let it = matches!(e.kind, Some(Kind::Iteration(_)));
        events.push(e);
        if it {
            break;
        }
    }
    c.cancel_job(pb::CancelJobRequest {
        job_id: running_id.clone(),
    })
    .await
    .unwrap();
    events.extend(collect(running).await);
    assert_gap_free(&events);
    assert_eq!(statuses(&events).last(), Some(&pb::JobStatus::Cancelled));
    assert_eq!(last_message(&events), "cancelled by request");
    let job = c
        .get_job(pb::GetJobRequest {
            job_id: running_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status, pb::JobStatus::Cancelled as i32);
    assert!(job.epochs_completed < 1000);
    // 1000 epochs × 100 iterations were asked for; cancel stopped it long before.
    let steps = iterations(&events).last().unwrap().global_step;
    assert!(steps < 100_000, "ran {steps} steps");
    // Cancelling a finished job changes nothing.
    let again = c
        .cancel_job(pb::CancelJobRequest { job_id: running_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.status, pb::JobStatus::Cancelled as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_wait_queued_and_run_in_submission_order() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            c.submit_job(request(spec(300, 2, 2)))
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    let mut jobs = Vec::new();
    for id in &ids {
        let events = watch(&mut c, id, 1).await;
        assert_eq!(
            statuses(&events),
            vec![
                pb::JobStatus::Queued,
                pb::JobStatus::Running,
                pb::JobStatus::Succeeded
            ]
        );
        jobs.push(
            c.get_job(pb::GetJobRequest { job_id: id.clone() })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    // With one slot, each job starts only after the previous one finished.
    for w in jobs.windows(2) {
        let prev_end = w[0].finished.unwrap();
        let next_start = w[1].started.unwrap();
        assert!(
            (next_start.seconds, next_start.nanos) >= (prev_end.seconds, prev_end.nanos),
            "job started before the previous one finished"
        );
    }
    let listed: Vec<String> = c
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, ids, "listed oldest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_slots_run_two_jobs_at_once() {
    let ts = TestServer::start(2).await;
    let mut c = ts.client().await;
    let mut a = spec(4000, 2, 1000);
    a.report_every = 1;
    let mut sa = c.train(request(a.clone())).await.unwrap().into_inner();
    let mut sb = c.train(request(a)).await.unwrap().into_inner();
    // Both reach RUNNING while the other is still running (neither can finish 1000 epochs
    // before we cancel them).
    for s in [&mut sa, &mut sb] {
        loop {
            let e = s.message().await.unwrap().unwrap();
            if matches!(e.kind, Some(Kind::Iteration(_))) {
                break;
            }
        }
    }
    let jobs = c
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert!(
        jobs.iter()
            .all(|j| j.status == pb::JobStatus::Running as i32)
    );
    for j in jobs {
        c.cancel_job(pb::CancelJobRequest { job_id: j.id })
            .await
            .unwrap();
    }
    assert_eq!(
        statuses(&collect(sa).await).last(),
        Some(&pb::JobStatus::Cancelled)
    );
    assert_eq!(
        statuses(&collect(sb).await).last(),
        Some(&pb::JobStatus::Cancelled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_spec_and_seed_give_the_same_losses_bit_for_bit() {
    let ts = TestServer::start(2).await;
    let mut c = ts.client().await;
    let mut s = spec(1500, 3, 3);
    s.report_every = 1;
    s.model = mlp(vec![32, 16], pb::Activation::Gelu, true, 0.2);
    let losses = |events: &[pb::JobEvent]| -> Vec<u64> {
        let mut v: Vec<u64> = iterations(events)
            .iter()
            .map(|p| p.loss.to_bits())
            .collect();
        for e in epochs(events) {
            v.push(e.train.unwrap().loss.to_bits());
            v.push(e.validation.unwrap().loss.to_bits());
        }
        v
    };
    // Two at once (sharing libtorch) and one alone: all identical.
    let mut c2 = ts.client().await;
    let s2 = s.clone();
    let other = tokio::spawn(async move { train(&mut c2, s2).await });
    let a = train(&mut c, s.clone()).await;
    let b = other.await.unwrap();
    let alone = train(&mut c, s.clone()).await;
    assert_eq!(losses(&a).len(), 3 * 38 + 6);
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(losses(&a), losses(&alone));
    s.seed += 1;
    assert_ne!(
        losses(&a),
        losses(&train(&mut c, s).await),
        "another seed, other losses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverging_job_fails_with_a_useful_message_and_the_server_carries_on() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let mut s = spec(500, 2, 3);
    s.learning_rate = 1e38;
    s.optimizer = Some(pb::Optimizer {
        kind: pb::OptimizerKind::Sgd as i32,
        ..Default::default()
    });
    let events = train(&mut c, s).await;
    assert_eq!(statuses(&events).last(), Some(&pb::JobStatus::Failed));
    let msg = last_message(&events);
    assert!(
        msg.contains("at step ") && msg.contains("learning rate"),
        "{msg}"
    );
    // The next job trains normally.
    let ok = train(&mut c, spec(300, 2, 1)).await;
    assert_eq!(statuses(&ok).last(), Some(&pb::JobStatus::Succeeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_optimizer_trains() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    use pb::OptimizerKind as K;
    let cases = [
        (K::Sgd, 0.05, 0.9, true, None),
        (K::Sgd, 0.1, 0.0, false, Some(1e-4)),
        (K::Adam, 0.01, 0.0, false, None),
        (K::Adamw, 0.01, 0.0, false, Some(0.01)),
        (K::Rmsprop, 0.005, 0.0, false, None),
        (K::Adadelta, 1.0, 0.0, false, None),
    ];
    for (kind, lr, momentum, nesterov, weight_decay) in cases {
        let mut s = spec(800, 2, 4);
        s.learning_rate = lr;
        s.optimizer = Some(pb::Optimizer {
            kind: kind as i32,
            momentum,
            nesterov,
            weight_decay,
            ..Default::default()
        });
        let events = train(&mut c, s).await;
        assert_eq!(
            statuses(&events).last(),
            Some(&pb::JobStatus::Succeeded),
            "{kind:?}"
        );
        let eps = epochs(&events);
        let first = eps[0].train.as_ref().unwrap().loss;
        let last = eps[3].train.as_ref().unwrap().loss;
        assert!(last < first, "{kind:?}: train loss {first} -> {last}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_with_text_labels_and_class_weights() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let mut text = String::from("x1,species,x2\n");
    for i in 0..300 {
        let (label, shift) = match i % 3 {
            0 => ("setosa", 0.0),
            1 => ("virginica", 3.0),
            _ => ("versicolor", -3.0),
        };
        text.push_str(&format!(
            "{},{label},{}\n",
            shift + (i % 7) as f64 * 0.1,
            -shift + (i % 5) as f64 * 0.1
        ));
    }
    ts.write_csv("flowers/iris-like.csv", &text);
    let mut s = csv_spec("flowers/iris-like.csv", "species");
    s.class_weights = vec![1.0, 2.0, 0.5];
    let events = train(&mut c, s).await;
    assert_eq!(
        statuses(&events).last(),
        Some(&pb::JobStatus::Succeeded),
        "{}",
        last_message(&events)
    );
    let last = epochs(&events).pop().unwrap();
    let val = last.validation.unwrap();
    assert_eq!(
        val.confusion_matrix.unwrap().labels,
        vec!["setosa", "versicolor", "virginica"]
    );
    assert_eq!(
        val.per_class
            .iter()
            .map(|c| c.label.as_str())
            .collect::<Vec<_>>(),
        vec!["setosa", "versicolor", "virginica"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_fraction_zero_trains_without_validation_metrics() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let mut s = spec(320, 2, 1);
    s.validation_fraction = Some(0.0);
    let events = train(&mut c, s).await;
    let e = epochs(&events).pop().unwrap();
    assert!(e.validation.is_none());
    assert_eq!(
        e.train
            .unwrap()
            .confusion_matrix
            .unwrap()
            .counts
            .iter()
            .sum::<u64>(),
        320
    );
    assert_eq!(iterations(&events).last().unwrap().iterations_per_epoch, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer() {
    let ts = TestServer::start(1).await;
    let channel = tonic::transport::Endpoint::from_shared(ts.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in [
        "",
        "gradstream.v1.Trainer",
        "gradstream.v1.Datasets",
        "gradstream.v1.Models",
    ] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("expected a service list, got {msg:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "gradstream.v1.Trainer",
        "gradstream.v1.Datasets",
        "gradstream.v1.Models",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&service.to_string()), "{names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_job_ids_are_not_found() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let id = || "no-such-job".to_string();
    let e = c
        .get_job(pb::GetJobRequest { job_id: id() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("no-such-job"));
    let e = c
        .cancel_job(pb::CancelJobRequest { job_id: id() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .watch_job(pb::WatchJobRequest {
            job_id: id(),
            from_seq: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_vanished_watcher_does_not_hold_training_back() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    // 4000 samples → 100 iterations per epoch, a report each: over 300 events, more than a
    // watcher's send buffer and the HTTP/2 window of a stream nobody reads.
    let mut s = spec(4000, 2, 3);
    s.report_every = 1;
    let job = c.submit_job(request(s)).await.unwrap().into_inner();
    let watch_req = || pb::WatchJobRequest {
        job_id: job.id.clone(),
        from_seq: 1,
    };
    let mut slow_client = ts.client().await;
    let slow = slow_client
        .watch_job(watch_req())
        .await
        .unwrap()
        .into_inner();
    let mut gone_client = ts.client().await;
    drop(
        gone_client
            .watch_job(watch_req())
            .await
            .unwrap()
            .into_inner(),
    );
    drop(gone_client);
    // The job runs to the end while the slow watcher has read nothing.
    let events = watch(&mut c, &job.id, 1).await;
    assert_eq!(statuses(&events).last(), Some(&pb::JobStatus::Succeeded));
    assert!(events.len() > 300, "{} events", events.len());
    // The slow watcher then still gets everything, once, in order.
    assert_eq!(collect(slow).await, events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_jobs_pages_and_filters_and_delete_job_removes_finished_jobs() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut s = spec(200, 2, 1);
        s.name = format!("sweep-{i}");
        ids.push(c.submit_job(request(s)).await.unwrap().into_inner().id);
    }
    for id in &ids {
        watch(&mut c, id, 1).await;
    }
    let mut long = spec(4000, 2, 1000);
    long.name = "long".into();
    let long_id = c.submit_job(request(long)).await.unwrap().into_inner().id;

    // Pages of 2: three pages, together the whole list in order.
    let mut all = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = c
            .list_jobs(pb::ListJobsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        all.extend(r.jobs.into_iter().map(|j| j.id));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(all, [ids.clone(), vec![long_id.clone()]].concat());

    let filtered = |statuses: Vec<pb::JobStatus>, name: &str| pb::ListJobsRequest {
        statuses: statuses.into_iter().map(|s| s as i32).collect(),
        name_contains: name.into(),
        ..Default::default()
    };
    let done = c
        .list_jobs(filtered(vec![pb::JobStatus::Succeeded], ""))
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(done.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), ids);
    let named = c
        .list_jobs(filtered(vec![], "sweep-3"))
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].id, ids[3]);
    let err = c
        .list_jobs(pb::ListJobsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_token"));

    // A job that has not finished cannot be deleted; a finished one can, with its files.
    let err = c
        .delete_job(pb::DeleteJobRequest {
            job_id: long_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    c.cancel_job(pb::CancelJobRequest {
        job_id: long_id.clone(),
    })
    .await
    .unwrap();
    watch(&mut c, &long_id, 1).await;
    let job_dir = ts.state_path().join("jobs").join(&ids[0]);
    assert!(job_dir.is_dir(), "a finished job has its checkpoints");
    c.delete_job(pb::DeleteJobRequest {
        job_id: ids[0].clone(),
    })
    .await
    .unwrap();
    assert!(!job_dir.exists());
    let err = c
        .get_job(pb::GetJobRequest {
            job_id: ids[0].clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let left = c
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(left.len(), 5);
    assert!(left.iter().all(|j| j.id != ids[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_only_zero_weight_classes_is_skipped_not_a_divergence() {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let mut s = spec(200, 2, 2);
    // Batches of one sample: every class-0 batch has total weight 0 (a 0/0 mean loss).
    s.batch_size = 1;
    s.class_weights = vec![0.0, 1.0];
    let events = train(&mut c, s).await;
    assert_eq!(
        statuses(&events).last(),
        Some(&pb::JobStatus::Succeeded),
        "{}",
        last_message(&events)
    );
    assert!(iterations(&events).iter().all(|p| p.loss.is_finite()));
}
