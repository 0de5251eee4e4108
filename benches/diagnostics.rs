//! `make bench`, part 4: the cost of per-layer diagnostics. The throughput benchmark's job
//! (MLP 32-128-10, 60,000 samples, 3 epochs) trained with and without `layer_diagnostics`,
//! interleaved; reports the mean epoch time of each and the overhead.

mod common;

use common::{bench_spec, start_server};
use gradstream::transport::pb::{self, trainer_client::TrainerClient};
use tonic::transport::Channel;

const ROUNDS: usize = 3;

/// Mean epoch wall time (from the epoch events) of one job.
async fn epoch_seconds(c: &mut TrainerClient<Channel>, diagnostics: bool) -> f64 {
    let mut spec = bench_spec(0);
    // A validation split, so the diagnostics use their fixed 256-row sample.
    spec.validation_fraction = Some(0.1);
    spec.layer_diagnostics = Some(diagnostics);
    let mut stream = c
        .train(pb::SubmitJobRequest {
            spec: Some(spec),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut seconds = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        if let Some(pb::job_event::Kind::Epoch(x)) = e.kind {
            assert_eq!(x.layers.is_empty(), !diagnostics);
            seconds.push(x.seconds);
        }
    }
    seconds.iter().sum::<f64>() / seconds.len() as f64
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let mut c = TrainerClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        off.push(epoch_seconds(&mut c, false).await);
        on.push(epoch_seconds(&mut c, true).await);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!("diagnostics: mean epoch seconds over {ROUNDS} interleaved rounds");
    println!("  without: {:.4} s  {off:.4?}", mean(&off));
    println!("  with:    {:.4} s  {on:.4?}", mean(&on));
    println!(
        "  overhead: {:+.2}%",
        (mean(&on) / mean(&off) - 1.0) * 100.0
    );
}
