//! `make bench`, part 1: the same MLP trained three ways, in one run so the ratios compare
//! like with like on a noisy machine:
//!   1. through the running service, end to end (gRPC Train call, events streamed back),
//!   2. as a bare tch loop (no service, no metrics, no events),
//!   3. in eager PyTorch from .venv (bench/pytorch_mlp.py).
//!
//! Each runs ROUNDS times, interleaved; medians are reported. All three use the same number
//! of libtorch intra-op threads: the server's (`--torch-threads`, auto), which it sets for
//! the whole process when it starts.

mod common;

use std::time::Instant;

use common::*;
use gradstream::transport::pb::trainer_client::TrainerClient;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

const ROUNDS: usize = 3;

/// The loop a user would write with tch directly.
fn bare_tch() -> f64 {
    tch::manual_seed(0);
    let n = i64::from(SAMPLES);
    let opts = (Kind::Float, Device::Cpu);
    let centres = Tensor::randn([i64::from(CLASSES), i64::from(FEATURES)], opts) * 3.0;
    let y = Tensor::randint(i64::from(CLASSES), [n], (Kind::Int64, Device::Cpu));
    let x = centres.index_select(0, &y) + Tensor::randn([n, i64::from(FEATURES)], opts);
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let net = nn::seq()
        .add(nn::linear(
            &p / "l1",
            i64::from(FEATURES),
            i64::from(HIDDEN),
            Default::default(),
        ))
        .add_fn(|x| x.relu())
        .add(nn::linear(
            &p / "l2",
            i64::from(HIDDEN),
            i64::from(CLASSES),
            Default::default(),
        ));
    let mut opt = nn::Adam::default().build(&vs, LR).unwrap();
    let bs = i64::from(BATCH);
    let start = Instant::now();
    for _ in 0..EPOCHS {
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let xs = x.index_select(0, &perm);
        let ys = y.index_select(0, &perm);
        let mut i = 0;
        while i < n {
            let len = bs.min(n - i);
            let loss = net
                .forward(&xs.narrow(0, i, len))
                .cross_entropy_for_logits(&ys.narrow(0, i, len));
            opt.backward_step(&loss);
            i += bs;
        }
    }
    start.elapsed().as_secs_f64()
}

/// Submit and follow through gRPC; returns (RUNNING→SUCCEEDED seconds, submit→last event seconds).
async fn service(client: &mut TrainerClient<tonic::transport::Channel>) -> (f64, f64) {
    let start = Instant::now();
    let events = train_events(client, bench_spec(0)).await;
    let wall = start.elapsed().as_secs_f64();
    (training_seconds(&events), wall)
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = rt.block_on(start_server(dir.path()));
    let mut client = rt
        .block_on(TrainerClient::connect(format!("http://{}", server.addr)))
        .unwrap();
    let samples = f64::from(SAMPLES * EPOCHS);
    println!(
        "throughput: MLP {FEATURES}-{HIDDEN}-{CLASSES}, Adam, batch {BATCH}, {SAMPLES} samples x {EPOCHS} epochs ({} steps), CPU threads {}",
        EPOCHS * SAMPLES.div_ceil(BATCH),
        tch::get_num_threads()
    );
    let (mut svc, mut svc_wall, mut bare, mut py) = (vec![], vec![], vec![], vec![]);
    for round in 1..=ROUNDS {
        let (t, w) = rt.block_on(service(&mut client));
        svc.push(t);
        svc_wall.push(w);
        bare.push(bare_tch());
        py.push(pytorch_seconds(tch::get_num_threads()));
        println!(
            "  round {round}: service {t:.3}s (submit→end {w:.3}s), bare tch {:.3}s, pytorch {:.3}s",
            bare[round - 1],
            py[round - 1]
        );
    }
    let (svc, svc_wall, bare, py) = (median(svc), median(svc_wall), median(bare), median(py));
    println!("median seconds and samples/s:");
    println!(
        "  service (training)       {svc:>7.3}s  {:>10.0}/s",
        samples / svc
    );
    println!(
        "  service (submit→end)     {svc_wall:>7.3}s  {:>10.0}/s",
        samples / svc_wall
    );
    println!(
        "  bare tch loop            {bare:>7.3}s  {:>10.0}/s",
        samples / bare
    );
    println!(
        "  pytorch eager            {py:>7.3}s  {:>10.0}/s",
        samples / py
    );
    println!("ratios (throughput):");
    println!(
        "  service / bare tch       {:.3}  (goal >= 0.95)",
        bare / svc
    );
    println!("  service / pytorch        {:.3}  (goal >= 1.2)", py / svc);
    println!("  bare tch / pytorch       {:.3}", py / bare);
    rt.block_on(server.shutdown()).unwrap();
}
