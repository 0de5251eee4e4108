//! `make bench`, part 5: a small CNN on scikit-learn's 8x8 digits through the service.
//! Goal: at least 97% validation accuracy in under a minute on 2 CPU cores. Reports the
//! best epoch's validation accuracy and the job's wall time (submit to SUCCEEDED).

mod common;

use std::time::Instant;

use common::{digits_cnn_spec, start_server, train_events, write_digits_csv};
use gradstream::transport::pb::{self, trainer_client::TrainerClient};

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    write_digits_csv(dir.path());
    let server = start_server(dir.path()).await;
    let mut c = TrainerClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let spec = digits_cnn_spec(30);
    let start = Instant::now();
    let mut accuracies = Vec::new();
    for e in train_events(&mut c, spec).await {
        match e.kind {
            Some(pb::job_event::Kind::Epoch(x)) => {
                accuracies.push(x.validation.map_or(f64::NAN, |v| v.accuracy))
            }
            Some(pb::job_event::Kind::Status(s)) if s.status == pb::JobStatus::Failed as i32 => {
                panic!("{}", s.message)
            }
            _ => {}
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (best_epoch, best) = accuracies
        .iter()
        .enumerate()
        .fold((0, 0.0), |b, (i, &a)| if a > b.1 { (i + 1, a) } else { b });
    println!("digits (8x8, 1,797 images, 360 held out): CNN 32-64 conv + 128 dense, 30 epochs");
    println!(
        "  best validation accuracy {best:.4} at epoch {best_epoch}; last {:.4}",
        accuracies.last().unwrap()
    );
    println!("  wall time {seconds:.1} s (goal: >= 0.97 in < 60 s)");
}
