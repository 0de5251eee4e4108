//! `make bench`, part 1: the same MLP trained three ways, in one run so the ratios compare
//! like with like on a noisy machine:
//!   1. through the running service, end to end (gRPC Train call, events streamed back),
//!   2. as a bare tch loop (no service, no metrics, no events),
//!   3. in eager PyTorch from .venv (bench/pytorch_mlp.py).
//!
//! To show where the service's time goes, also the engine alone (`engine::train` on this
//! thread with an observer that drops every report: metrics, checkpoints and all, but no
//! server, store or stream), with its set-up (split, normalization, tensors) timed apart.
//! Then a second, less overhead-dominated case: the digits CNN (benches/digits.rs's model
//! on 8x8 images), the same three ways (bench/pytorch_cnn.py).
//!
//! Each runs ROUNDS times, interleaved; medians are reported. All three use the same number
//! of libtorch intra-op threads: the server's (`--torch-threads`, auto), which it sets for
//! the whole process when it starts.

mod common;

use std::time::Instant;

use common::*;
use gradstream::transport::pb::trainer_client::TrainerClient;
use tch::nn::{self, Module, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

const ROUNDS: usize = 5;

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

/// Times `engine::train` of the bench spec, called directly: (set-up seconds, training
/// seconds), set-up being everything before the engine reports `started`.
fn engine_direct() -> (f64, f64) {
    use gradstream::domain::{
        Checkpoint, DatasetSpec, EpochEnd, IterationProgress, RunId, RunInfo,
    };
    struct Timer {
        start: Instant,
        setup: Option<f64>,
    }
    impl gradstream::engine::Observer for Timer {
        fn started(&mut self, _: RunInfo) {
            self.setup = Some(self.start.elapsed().as_secs_f64());
        }
        fn iteration(&mut self, _: RunId, _: IterationProgress) {}
        fn checkpoint(&mut self, _: RunId, _: Checkpoint) {}
        fn epoch_end(&mut self, _: RunId, _: EpochEnd) {}
    }
    let spec = gradstream::domain::JobSpec::try_from(bench_spec(0)).unwrap();
    let DatasetSpec::Synthetic(synthetic) = &spec.dataset else {
        unreachable!("the bench's dataset is synthetic")
    };
    let data = gradstream::data::generate(synthetic).unwrap();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let mut timer = Timer {
        start: Instant::now(),
        setup: None,
    };
    gradstream::engine::train(&spec, &data, Device::Cpu, &mut timer, &cancel, None).unwrap();
    let total = timer.start.elapsed().as_secs_f64();
    let setup = timer.setup.unwrap();
    (setup, total - setup)
}

/// The digits CNN as a user would write it with tch: the layers of
/// [`digits_cnn_spec`], Adam, on the first `rows` images of `csv` (pixels / 16), shuffled
/// each epoch; its training seconds.
fn bare_tch_cnn(csv: &std::path::Path, rows: usize, epochs: u32) -> f64 {
    tch::manual_seed(0);
    let data = gradstream::data::load_csv(csv, "digits.csv", None).unwrap();
    let n = rows as i64;
    let x = (Tensor::from_slice(&data.features[..rows * 64]) / 16.0).view([n, 1, 8, 8]);
    let targets: Vec<i64> = data.targets[..rows].iter().map(|&t| t as i64).collect();
    let y = Tensor::from_slice(&targets);
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let conv = |p: nn::Path, cin, cout| {
        let cfg = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let c = nn::conv2d(&p / "conv", cin, cout, 3, cfg);
        let bn = nn::batch_norm2d(&p / "bn", cout, Default::default());
        nn::func_t(move |x, train| x.apply(&c).apply_t(&bn, train).relu().max_pool2d_default(2))
    };
    let net = nn::seq_t()
        .add(conv(&p / "b0", 1, 32))
        .add(conv(&p / "b1", 32, 64))
        .add_fn(|x| x.flatten(1, -1))
        .add(nn::linear(&p / "d", 256, 128, Default::default()))
        .add_fn(|x| x.relu())
        .add_fn_t(|x, train| x.dropout(0.3, train))
        .add(nn::linear(&p / "out", 128, 10, Default::default()));
    let mut opt = nn::Adam::default().build(&vs, DIGITS_LR).unwrap();
    let bs = i64::from(DIGITS_BATCH);
    let start = Instant::now();
    for _ in 0..epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let (xs, ys) = (x.index_select(0, &perm), y.index_select(0, &perm));
        let mut i = 0;
        while i < n {
            let len = bs.min(n - i);
            let loss = net
                .forward_t(&xs.narrow(0, i, len), true)
                .cross_entropy_for_logits(&ys.narrow(0, i, len));
            opt.backward_step(&loss);
            i += bs;
        }
    }
    start.elapsed().as_secs_f64()
}

/// The digits CNN through the service: (RUNNING→SUCCEEDED seconds, training rows).
async fn service_cnn(
    client: &mut TrainerClient<tonic::transport::Channel>,
    epochs: u32,
) -> (f64, usize) {
    let events = train_events(client, digits_cnn_spec(epochs)).await;
    let job = client
        .get_job(gradstream::transport::pb::GetJobRequest {
            job_id: events[0].job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    (training_seconds(&events), job.train_samples as usize)
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
    let (mut engine, mut setup) = (vec![], vec![]);
    for round in 1..=ROUNDS {
        let (t, w) = rt.block_on(service(&mut client));
        svc.push(t);
        svc_wall.push(w);
        let (s, e) = engine_direct();
        setup.push(s);
        engine.push(e);
        bare.push(bare_tch());
        py.push(pytorch_seconds(tch::get_num_threads()));
        println!(
            "  round {round}: service {t:.3}s (submit→end {w:.3}s), engine {e:.3}s (+ set-up {s:.3}s), bare tch {:.3}s, pytorch {:.3}s",
            bare[round - 1],
            py[round - 1]
        );
    }
    let (svc, svc_wall, bare, py) = (median(svc), median(svc_wall), median(bare), median(py));
    let (engine, setup) = (median(engine), median(setup));
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
        "  engine alone (training)  {engine:>7.3}s  {:>10.0}/s",
        samples / engine
    );
    println!("  engine set-up            {setup:>7.3}s");
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
    println!("  engine / bare tch        {:.3}", bare / engine);
    println!("  service / pytorch        {:.3}  (goal >= 1.2)", py / svc);
    println!("  bare tch / pytorch       {:.3}", py / bare);
    cnn_case(&rt, &mut client, dir.path());
    rt.block_on(server.shutdown()).unwrap();
}

/// Epochs of the CNN case: long enough to time, on the 1,437 training images.
const CNN_EPOCHS: u32 = 10;

fn cnn_case(
    rt: &tokio::runtime::Runtime,
    client: &mut TrainerClient<tonic::transport::Channel>,
    dir: &std::path::Path,
) {
    let csv = write_digits_csv(dir);
    println!(
        "throughput, CNN case: digits 8x8, conv 32-64 (batch norm, max pool) + dense 128 (dropout 0.3), Adam, batch {DIGITS_BATCH}, {CNN_EPOCHS} epochs"
    );
    let (mut svc, mut bare, mut py) = (vec![], vec![], vec![]);
    let mut rows = 0;
    for round in 1..=ROUNDS {
        let (t, n) = rt.block_on(service_cnn(client, CNN_EPOCHS));
        rows = n;
        svc.push(t);
        bare.push(bare_tch_cnn(&csv, rows, CNN_EPOCHS));
        py.push(pytorch_cnn_seconds(
            &csv,
            rows,
            CNN_EPOCHS,
            tch::get_num_threads(),
        ));
        println!(
            "  round {round}: service {t:.3}s, bare tch {:.3}s, pytorch {:.3}s ({rows} training images)",
            bare[round - 1],
            py[round - 1]
        );
    }
    let (svc, bare, py) = (median(svc), median(bare), median(py));
    let samples = (rows as u32 * CNN_EPOCHS) as f64;
    println!("median seconds and samples/s:");
    for (what, s) in [
        ("service (training)", svc),
        ("bare tch loop", bare),
        ("pytorch eager", py),
    ] {
        println!("  {what:<24} {s:>7.3}s  {:>10.0}/s", samples / s);
    }
    println!("ratios (throughput):");
    println!("  service / bare tch       {:.3}", bare / svc);
    println!("  service / pytorch        {:.3}", py / svc);
}
