//! `WatchJob` streams share one encoded log per job: a watcher that stops reading holds
//! back neither the job nor the other watchers, catches up from the log where it left off,
//! and a deleted job's log is freed under it.

mod common;

use common::*;
use gradstream::transport::pb::{self, trainer_client::TrainerClient};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// A job of about 1,250 events (a report every iteration), far more than one stream's
/// HTTP/2 window on a [`tiny_window`] connection and the server's send buffer.
fn chatty_spec() -> pb::JobSpec {
    let mut s = spec(8000, 2, 5);
    s.report_every = 1;
    s
}

/// A client whose streams each accept 1 KiB before the server must wait for it to read.
async fn tiny_window(ts: &TestServer) -> TrainerClient<Channel> {
    let channel = Endpoint::from_shared(ts.url())
        .unwrap()
        .initial_stream_window_size(1024)
        .http2_adaptive_window(false)
        .connect()
        .await
        .unwrap();
    TrainerClient::new(channel)
}

/// A running [`chatty_spec`] job and a [`tiny_window`] watcher of it that has read its
/// first event and nothing more.
struct Stalled {
    _ts: TestServer,
    c: TrainerClient<Channel>,
    job: pb::Job,
    slow_client: TrainerClient<Channel>,
    slow: tonic::Streaming<pb::JobEvent>,
    first: pb::JobEvent,
}

async fn stalled_watcher() -> Stalled {
    let ts = TestServer::start(1).await;
    let mut c = ts.client().await;
    let job = c
        .submit_job(request(chatty_spec()))
        .await
        .unwrap()
        .into_inner();
    let mut slow_client = tiny_window(&ts).await;
    let mut slow = watch_stream(&mut slow_client, &job.id, 1).await;
    let first = bounded("the first event", slow.message())
        .await
        .unwrap()
        .expect("an event");
    Stalled {
        _ts: ts,
        c,
        job,
        slow_client,
        slow,
        first,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_holds_back_neither_the_job_nor_other_watchers() {
    let Stalled {
        _ts,
        mut c,
        job,
        slow_client,
        slow: stalled,
        first,
    } = stalled_watcher().await;
    // A reading watcher on the stalled one's connection.
    let mut reader = slow_client.clone();
    let beside = tokio::spawn({
        let id = job.id.clone();
        async move { watch(&mut reader, &id, 1).await }
    });
    let events = bounded(
        "a reading watcher to see the job end",
        watch(&mut c, &job.id, 1),
    )
    .await;
    assert_gap_free(&events);
    assert_eq!(statuses(&events).last(), Some(&pb::JobStatus::Succeeded));
    assert!(events.len() > 1000, "{} events", events.len());
    assert_eq!(
        get_job(&mut c, &job.id).await.status(),
        pb::JobStatus::Succeeded
    );
    let beside = bounded("the watcher beside the stalled one", beside)
        .await
        .unwrap();
    assert_eq!(beside, events);
    // The stalled watcher read one event while the job ran to its end; it now catches up
    // with every event once, in order.
    let mut caught_up = vec![first];
    caught_up.extend(bounded("the stalled watcher to catch up", collect(stalled)).await);
    assert_eq!(caught_up, events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_ends_the_streams_still_reading_it() {
    let Stalled {
        _ts,
        mut c,
        job,
        mut slow,
        first,
        ..
    } = stalled_watcher().await;
    let mut seen = vec![first];
    let events = bounded("the job to end", watch(&mut c, &job.id, 1)).await;
    assert_eq!(statuses(&events).last(), Some(&pb::JobStatus::Succeeded));
    c.delete_job(pb::DeleteJobRequest {
        job_id: job.id.clone(),
    })
    .await
    .unwrap();
    let e = c
        .watch_job(pb::WatchJobRequest {
            job_id: job.id.clone(),
            from_seq: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // The slow watcher gets what was already on its way, in order, then NOT_FOUND: the
    // job's encoded log is gone.
    let end = bounded("the slow watcher's stream to end", async {
        loop {
            match slow.message().await {
                Ok(Some(e)) => seen.push(e),
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await;
    assert_eq!(end.map(|s| s.code()), Some(Code::NotFound));
    assert!(
        seen.len() < events.len(),
        "{} of {} events",
        seen.len(),
        events.len()
    );
    assert_eq!(seen, events[..seen.len()]);
}
