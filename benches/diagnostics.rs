//! `make bench`, part 4: the cost of per-layer diagnostics. The throughput benchmark's job
//! (MLP 32-128-10, 60,000 samples, 3 epochs) trained with and without `layer_diagnostics`,
//! interleaved; reports the median over rounds of each job's mean epoch time, and the
//! overhead.

mod common;

use common::{bench_spec, median, start_server, train_events};
use gradstream::transport::pb::{self, trainer_client::TrainerClient};
use tonic::transport::Channel;

const ROUNDS: usize = 10;

/// Mean epoch wall time (from the epoch events) of one job, and the share of it the
/// diagnostics took (their own timing, reported in the events).
async fn epoch_seconds(c: &mut TrainerClient<Channel>, diagnostics: bool) -> (f64, f64) {
    let mut spec = bench_spec(0);
    // A validation split, so the diagnostics use their fixed 256-row sample.
    spec.validation_fraction = Some(0.1);
    spec.layer_diagnostics = Some(diagnostics);
    let (mut seconds, mut spent) = (Vec::new(), 0.0);
    for e in train_events(c, spec).await {
        if let Some(pb::job_event::Kind::Epoch(x)) = e.kind {
            assert_eq!(x.layers.is_empty(), !diagnostics);
            seconds.push(x.seconds);
            spent += x.diagnostics_seconds;
        }
    }
    let total: f64 = seconds.iter().sum();
    (total / seconds.len() as f64, spent / total)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let mut c = TrainerClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let (mut on, mut off, mut share) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        off.push(epoch_seconds(&mut c, false).await.0);
        let (s, f) = epoch_seconds(&mut c, true).await;
        on.push(s);
        share.push(f);
    }
    // Medians: one slow round (the VM is shared) would move a mean by more than the
    // effect measured.
    let median = |v: &[f64]| median(v.to_vec());
    println!("diagnostics: median of mean epoch seconds over {ROUNDS} interleaved rounds");
    println!("  without: {:.4} s  {off:.3?}", median(&off));
    println!("  with:    {:.4} s  {on:.3?}", median(&on));
    println!(
        "  overhead: {:+.2}% (difference of the medians; noisy)",
        (median(&on) / median(&off) - 1.0) * 100.0
    );
    println!(
        "  diagnostics' own time: {:.3}% of epoch time (median over rounds; max {:.3}%)",
        median(&share) * 100.0,
        share.iter().copied().fold(0.0, f64::max) * 100.0
    );
}
