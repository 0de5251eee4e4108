//! The learning-rate range test as a job: it waits for a slot, is listed, can be cancelled
//! (by CancelJob or by its client going away), and survives a restart without repeating a
//! point. Every wait is bounded.

mod common;

use std::time::Duration;

use common::process::ServerProcess;
use common::*;
use gradstream::transport::pb::{self, job_event::Kind, trainer_client::TrainerClient};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

/// A range test that runs for a while (a learning rate too small to diverge).
fn long_test() -> pb::FindLearningRateRequest {
    let mut s = spec(4000, 2, 1);
    s.batch_size = 16;
    pb::FindLearningRateRequest {
        spec: Some(s),
        min_lr: Some(1e-7),
        max_lr: Some(1e-6),
        iterations: Some(10_000),
    }
}

async fn range_tests(c: &mut TrainerClient<Channel>) -> Vec<pb::Job> {
    list_jobs(c)
        .await
        .into_iter()
        .filter(|j| j.kind() == pb::JobKind::RangeTest)
        .collect()
}

/// The next message of a range-test stream.
async fn next(
    s: &mut Streaming<pb::LrFinderEvent>,
) -> Result<Option<pb::LrFinderEvent>, tonic::Status> {
    bounded("the next range-test message", s.message()).await
}

/// Starts [`long_test`] and waits for its first point: the stream and the test's job id.
async fn start_long_test(c: &mut TrainerClient<Channel>) -> (Streaming<pb::LrFinderEvent>, String) {
    let mut stream = c
        .find_learning_rate(long_test())
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut stream).await.unwrap().expect("a first point");
    (stream, first.job_id)
}

#[tokio::test]
async fn a_range_test_waits_for_a_slot_is_listed_and_its_points_are_events() {
    let server = TestServer::start(1).await;
    let mut c = server.client().await;
    let busy = c
        .submit_job(request(spec(4000, 2, 200)))
        .await
        .unwrap()
        .into_inner();
    wait_for_status(&mut c, &busy.id, pb::JobStatus::Running).await;
    let req = pb::FindLearningRateRequest {
        spec: Some(spec(600, 3, 1)),
        min_lr: Some(1e-5),
        max_lr: Some(10.0),
        iterations: Some(60),
    };
    let mut stream = c.find_learning_rate(req).await.unwrap().into_inner();
    // With the only slot taken, the test is a queued job of kind RANGE_TEST.
    let queued = bounded("the range test to be listed", async {
        loop {
            if let Some(j) = range_tests(&mut c).await.pop() {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(queued.status(), pb::JobStatus::Queued, "{}", queued.message);
    assert_eq!(
        (
            queued.range_min_lr,
            queued.range_max_lr,
            queued.range_iterations
        ),
        (Some(1e-5), Some(10.0), Some(60))
    );
    c.cancel_job(pb::CancelJobRequest {
        job_id: busy.id.clone(),
    })
    .await
    .unwrap();
    let mut points = Vec::new();
    let mut result = None;
    while let Some(e) = next(&mut stream).await.unwrap() {
        assert_eq!(e.job_id, queued.id);
        match e.kind.unwrap() {
            pb::lr_finder_event::Kind::Point(p) => points.push(p),
            pb::lr_finder_event::Kind::Result(r) => result = Some(r),
        }
    }
    let result = result.expect("the stream ends with the suggestion");
    assert!(!points.is_empty());
    let done = get_job(&mut c, &queued.id).await;
    assert_eq!(done.status(), pb::JobStatus::Succeeded, "{}", done.message);
    // WatchJob replays the same test: its points and its suggestion are the job's events.
    let events = bounded("the range test's history", watch(&mut c, &queued.id, 1)).await;
    assert_gap_free(&events);
    let replayed: Vec<pb::LrPoint> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::RangePoint(p)) => Some(*p),
            _ => None,
        })
        .collect();
    assert_eq!(replayed, points);
    let results: Vec<&pb::LrSuggestion> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::RangeResult(r)) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(results, [&result]);
    assert_eq!(
        statuses(&events),
        [
            pb::JobStatus::Queued,
            pb::JobStatus::Running,
            pb::JobStatus::Succeeded
        ]
    );
}

#[tokio::test]
async fn cancel_job_stops_a_running_range_test_and_its_stream_says_so() {
    let server = TestServer::start(2).await;
    let mut c = server.client().await;
    let (mut stream, id) = start_long_test(&mut c).await;
    assert_eq!(get_job(&mut c, &id).await.status(), pb::JobStatus::Running);
    c.cancel_job(pb::CancelJobRequest { job_id: id.clone() })
        .await
        .unwrap();
    let err = bounded("the stream to end", async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without saying the test was cancelled"),
                Err(e) => return e,
            }
        }
    })
    .await;
    assert_eq!(err.code(), Code::Cancelled, "{}", err.message());
    assert!(err.message().contains(&id), "{}", err.message());
    let j = wait_for_status(&mut c, &id, pb::JobStatus::Cancelled).await;
    assert_eq!(j.message, "cancelled by request");
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_range_test() {
    let server = TestServer::start(2).await;
    let mut c = server.client().await;
    let (stream, id) = start_long_test(&mut c).await;
    drop(stream);
    wait_for_status(&mut c, &id, pb::JobStatus::Cancelled).await;
}

// Multi-threaded: the client's connection tasks keep running while the test waits for the
// server process to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_test_stopped_by_a_shutdown_runs_again_after_the_restart_without_repeating_a_point()
{
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), state.path());
    let mut c = TrainerClient::connect(server.url.clone()).await.unwrap();
    let mut stream = c
        .find_learning_rate(long_test())
        .await
        .unwrap()
        .into_inner();
    let mut seen = 0;
    let mut id = String::new();
    while seen < 20 {
        let e = next(&mut stream)
            .await
            .unwrap()
            .expect("points before the shutdown");
        id = e.job_id;
        seen += 1;
    }
    let (status, _) = server.stop("TERM");
    assert!(status.success());
    let end = bounded("the stream's end", async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    let err = end.expect_err("a shutdown ends the stream with an error, not a result");
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());

    let server = ServerProcess::start(data.path(), state.path());
    let mut c = TrainerClient::connect(server.url.clone()).await.unwrap();
    let job = wait_for_status(&mut c, &id, pb::JobStatus::Succeeded).await;
    assert_eq!(job.kind(), pb::JobKind::RangeTest);
    let events = bounded("the history", watch(&mut c, &id, 1)).await;
    assert_gap_free(&events);
    let iterations: Vec<u32> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::RangePoint(p)) => Some(p.iteration),
            _ => None,
        })
        .collect();
    assert_eq!(
        iterations,
        (1..=10_000).collect::<Vec<_>>(),
        "every iteration once, in order"
    );
    let messages: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Status(s)) if s.status == pb::JobStatus::Queued as i32 => {
                Some(s.message.clone())
            }
            _ => None,
        })
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("stopped by a server shutdown")),
        "{messages:?}"
    );
    server.stop("TERM");
}
