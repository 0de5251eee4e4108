//! `make bench`, part 2: 1,000 concurrent watchers on one running job. Reports event
//! delivery latency (server timestamp → watcher receives it, live events only) and how much
//! the watchers slow training (RUNNING→SUCCEEDED with and without them, interleaved).

mod common;

use std::time::{Instant, SystemTime};

use common::*;
use gradstream::transport::pb::{self, trainer_client::TrainerClient};
use tonic::transport::{Channel, Endpoint};

const WATCHERS: usize = 1000;
/// Watchers share connections; HTTP/2 servers cap concurrent streams per connection.
const CONNECTIONS: usize = 10;
const ROUNDS: usize = 2;

async fn run_job(
    client: &mut TrainerClient<Channel>,
    channels: &[Channel],
    watchers: usize,
) -> (f64, Vec<f64>) {
    let job = client
        .submit_job(pb::SubmitJobRequest {
            spec: Some(bench_spec(0)),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut tasks = Vec::with_capacity(watchers);
    for i in 0..watchers {
        let mut c = TrainerClient::new(channels[i % channels.len()].clone());
        let id = job.id.clone();
        tasks.push(tokio::spawn(async move {
            let connected = SystemTime::now();
            let mut stream = c
                .watch_job(pb::WatchJobRequest {
                    job_id: id,
                    from_seq: 1,
                })
                .await
                .unwrap()
                .into_inner();
            let mut latencies = Vec::new();
            let mut count = 0;
            while let Some(e) = stream.message().await.unwrap() {
                count += 1;
                let sent = to_system_time(&e.time);
                if sent >= connected {
                    latencies.push(
                        SystemTime::now()
                            .duration_since(sent)
                            .unwrap_or_default()
                            .as_secs_f64(),
                    );
                }
            }
            (count, latencies)
        }));
    }
    let events = {
        let mut s = client
            .watch_job(pb::WatchJobRequest {
                job_id: job.id.clone(),
                from_seq: 1,
            })
            .await
            .unwrap()
            .into_inner();
        let mut v = Vec::new();
        while let Some(e) = s.message().await.unwrap() {
            v.push(e);
        }
        v
    };
    let mut latencies = Vec::new();
    for t in tasks {
        let (count, l) = t.await.unwrap();
        assert_eq!(count, events.len(), "every watcher saw every event");
        latencies.extend(l);
    }
    (training_seconds(&events), latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let server = start_server(dir.path()).await;
        let url = format!("http://{}", server.addr);
        let mut client = TrainerClient::connect(url.clone()).await.unwrap();
        let mut channels = Vec::new();
        for _ in 0..CONNECTIONS {
            channels.push(Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap());
        }
        println!(
            "watchers: {WATCHERS} watchers over {CONNECTIONS} connections on one job (MLP {FEATURES}-{HIDDEN}-{CLASSES}, {SAMPLES} samples x {EPOCHS} epochs, default report interval)"
        );
        let (mut alone, mut watched, mut all) = (vec![], vec![], vec![]);
        let start = Instant::now();
        for round in 1..=ROUNDS {
            let (t0, _) = run_job(&mut client, &channels, 0).await;
            let (t1, lat) = run_job(&mut client, &channels, WATCHERS).await;
            println!("  round {round}: training {t0:.3}s alone, {t1:.3}s with {WATCHERS} watchers ({} live deliveries)", lat.len());
            alone.push(t0);
            watched.push(t1);
            all.extend(lat);
        }
        all.sort_by(f64::total_cmp);
        let (alone, watched) = (median(alone), median(watched));
        println!("delivery latency of live events (ms): p50 {:.2}  p99 {:.2}  max {:.2}  ({} deliveries)",
            percentile(&all, 0.5) * 1e3, percentile(&all, 0.99) * 1e3, all.last().unwrap() * 1e3, all.len());
        println!("training time, median: alone {alone:.3}s, watched {watched:.3}s, slowdown {:+.1}% (goal < 2%)",
            (watched / alone - 1.0) * 100.0);
        println!("bench wall time {:.1}s", start.elapsed().as_secs_f64());
        server.shutdown().await.unwrap();
    });
}
