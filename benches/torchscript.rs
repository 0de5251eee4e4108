//! `make bench`, part 6: what training a user's TorchScript module costs against the same
//! network built in. The throughput benchmark's MLP (32-128-10, Adam, batch 64, 60,000
//! samples x 3 epochs) is trained through the running service twice per round, once as
//! `model.mlp` and once as an uploaded `torch.jit.script` of the same `nn.Sequential`
//! (bench/make_torchscript_mlp.py), and once in eager PyTorch (bench/pytorch_mlp.py).
//! Rounds are interleaved; medians are reported.

mod common;

use std::time::Instant;

use common::*;
use gradstream::transport::pb::{self, models_client::ModelsClient, trainer_client::TrainerClient};

const ROUNDS: usize = 3;

async fn upload(url: String, file: &std::path::Path) -> String {
    let mut m = ModelsClient::connect(url).await.unwrap();
    let bytes = std::fs::read(file).unwrap();
    let msgs = vec![
        pb::UploadModelRequest {
            part: Some(pb::upload_model_request::Part::Header(pb::ModelHeader {
                name: "bench-mlp".into(),
                sha256: String::new(),
            })),
        },
        pb::UploadModelRequest {
            part: Some(pb::upload_model_request::Part::Chunk(bytes)),
        },
    ];
    m.upload_model(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner()
        .id
}

/// Trains `spec` through the service; the RUNNING→SUCCEEDED seconds and the final
/// training loss.
async fn service(
    c: &mut TrainerClient<tonic::transport::Channel>,
    spec: pb::JobSpec,
) -> (f64, f64) {
    let events = train_events(c, spec).await;
    let loss = events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            Some(pb::job_event::Kind::Epoch(x)) => x.train.as_ref().map(|m| m.loss),
            _ => None,
        })
        .expect("an epoch event");
    (training_seconds(&events), loss)
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = rt.block_on(start_server(dir.path()));
    let url = format!("http://{}", server.addr);
    let mut client = rt.block_on(TrainerClient::connect(url.clone())).unwrap();
    let module = dir.path().join("mlp.pt");
    let (features, hidden, classes) = (
        FEATURES.to_string(),
        HIDDEN.to_string(),
        CLASSES.to_string(),
    );
    let make = bench_script("make_torchscript_mlp.py");
    run_python(&[
        make.to_str().unwrap(),
        module.to_str().unwrap(),
        "--features",
        &features,
        "--hidden",
        &hidden,
        "--classes",
        &classes,
    ]);
    let model_id = rt.block_on(upload(url, &module));
    let mut scripted = bench_spec(0);
    scripted.model = Some(pb::Model {
        kind: Some(pb::model::Kind::Torchscript(pb::TorchScriptModel {
            model_id,
            input_shape: vec![],
        })),
    });
    println!(
        "torchscript: MLP {FEATURES}-{HIDDEN}-{CLASSES}, Adam, batch {BATCH}, {SAMPLES} samples x {EPOCHS} epochs, CPU threads {}",
        tch::get_num_threads()
    );
    let (mut builtin, mut uploaded, mut py) = (vec![], vec![], vec![]);
    for round in 1..=ROUNDS {
        let start = Instant::now();
        let (b, b_loss) = rt.block_on(service(&mut client, bench_spec(0)));
        let (s, s_loss) = rt.block_on(service(&mut client, scripted.clone()));
        let p = pytorch_seconds(tch::get_num_threads());
        println!(
            "  round {round}: built-in {b:.3}s (final train loss {b_loss:.4}), TorchScript {s:.3}s (final train loss {s_loss:.4}), pytorch {p:.3}s  [{:.1}s]",
            start.elapsed().as_secs_f64()
        );
        builtin.push(b);
        uploaded.push(s);
        py.push(p);
    }
    let (b, s, p) = (median(builtin), median(uploaded), median(py));
    let samples = f64::from(SAMPLES * EPOCHS);
    println!("median seconds and samples/s:");
    println!(
        "  service, model.mlp          {b:>7.3}s  {:>10.0}/s",
        samples / b
    );
    println!(
        "  service, model.torchscript  {s:>7.3}s  {:>10.0}/s",
        samples / s
    );
    println!(
        "  pytorch eager               {p:>7.3}s  {:>10.0}/s",
        samples / p
    );
    println!("ratios (throughput):");
    println!("  torchscript / built-in      {:.3}", b / s);
    println!("  torchscript / pytorch       {:.3}", p / s);
    rt.block_on(server.shutdown()).unwrap();
}
