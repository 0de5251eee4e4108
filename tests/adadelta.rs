//! The hand-written AdaDelta against torch.optim.Adadelta's own numbers
//! (tests/fixtures/adadelta.json, made by tests/fixtures/make_adadelta_fixture.py).

use gradstream::engine::AdaDelta;
use serde_json::Value;
use tch::{Kind, Tensor};

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn matches_torch_optim_adadelta_step_for_step() {
    let text = std::fs::read_to_string("tests/fixtures/adadelta.json").unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let shapes: Vec<Vec<i64>> = case["shapes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s.as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_i64().unwrap())
                    .collect()
            })
            .collect();
        let params: Vec<Tensor> = case["initial"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&shapes)
            .map(|(v, s)| {
                Tensor::from_slice(&floats(v))
                    .view(s.as_slice())
                    .set_requires_grad(true)
            })
            .collect();
        let mut opt = AdaDelta::new(
            params.iter().map(|p| p.shallow_clone()).collect(),
            case["lr"].as_f64().unwrap(),
            case["rho"].as_f64().unwrap(),
            case["eps"].as_f64().unwrap(),
            case["weight_decay"].as_f64().unwrap(),
        );
        let steps = case["grads"].as_array().unwrap();
        assert_eq!(steps.len(), 6);
        for (step, (grads, after)) in steps
            .iter()
            .zip(case["after"].as_array().unwrap())
            .enumerate()
        {
            for ((p, g), s) in params.iter().zip(grads.as_array().unwrap()).zip(&shapes) {
                let mut grad = p.grad();
                if !grad.defined() {
                    // First step: create the gradient by a backward pass of sum(p * g).
                    let g = Tensor::from_slice(&floats(g)).view(s.as_slice());
                    (p * &g).sum(Kind::Double).backward();
                } else {
                    grad.copy_(&Tensor::from_slice(&floats(g)).view(s.as_slice()));
                }
            }
            opt.step().unwrap();
            for (i, (p, want)) in params.iter().zip(after.as_array().unwrap()).enumerate() {
                let got = Vec::<f64>::try_from(&p.detach().flatten(0, -1)).unwrap();
                let want = floats(want);
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(
                    worst < 1e-12,
                    "{name}: step {} param {i}: max |diff| {worst:e}",
                    step + 1
                );
            }
        }
    }
}
