//! The hand-written optimizers against torch.optim's own numbers
//! (tests/fixtures/optimizers.json, made by tests/fixtures/make_optimizer_fixture.py), and
//! their state: saved, restored, and resumed bit for bit.

use gradstream::domain::OptimizerSpec;
use gradstream::engine::{AdaDelta, Optimizer};
use serde_json::Value;
use tch::{Device, Kind, Tensor, nn};

/// Largest |ours - torch's| allowed in any parameter after any step.
const TOLERANCE: f64 = 1e-12;

/// What `Optimizer::state` gives and `Optimizer::load_state` takes.
type State = Vec<(String, Tensor)>;

struct Case {
    name: String,
    spec: OptimizerSpec,
    lr: f64,
    shapes: Vec<Vec<i64>>,
    initial: Vec<Vec<f64>>,
    /// Per step, per parameter: the gradient, or `None` when it has none yet.
    grads: Vec<Vec<Option<Vec<f64>>>>,
    /// Per step, per parameter: torch.optim's parameters after that step.
    after: Vec<Vec<Vec<f64>>>,
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn spec_of(c: &Value) -> OptimizerSpec {
    let f = |k: &str| c[k].as_f64().unwrap_or_else(|| panic!("{k} missing"));
    match c["optimizer"].as_str().unwrap() {
        "sgd" => OptimizerSpec::Sgd {
            momentum: f("momentum"),
            nesterov: c["nesterov"].as_bool().unwrap(),
            weight_decay: f("weight_decay"),
        },
        kind @ ("adam" | "adamw") => OptimizerSpec::Adam {
            beta1: f("beta1"),
            beta2: f("beta2"),
            eps: f("eps"),
            weight_decay: f("weight_decay"),
            decoupled: kind == "adamw",
        },
        "rmsprop" => OptimizerSpec::RmsProp {
            alpha: f("alpha"),
            eps: f("eps"),
            momentum: f("momentum"),
            weight_decay: f("weight_decay"),
        },
        "adadelta" => OptimizerSpec::AdaDelta {
            rho: f("rho"),
            eps: f("eps"),
            weight_decay: f("weight_decay"),
        },
        other => panic!("unknown optimizer {other}"),
    }
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string("tests/fixtures/optimizers.json").unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let steps = fixture["steps"].as_u64().unwrap() as usize;
    assert_eq!(steps, 6);
    let cases: Vec<Case> = fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let case = Case {
                name: c["name"].as_str().unwrap().to_string(),
                spec: spec_of(c),
                lr: c["lr"].as_f64().unwrap(),
                shapes: c["shapes"]
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
                    .collect(),
                initial: c["initial"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(floats)
                    .collect(),
                grads: c["grads"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|step| {
                        step.as_array()
                            .unwrap()
                            .iter()
                            .map(|g| (!g.is_null()).then(|| floats(g)))
                            .collect()
                    })
                    .collect(),
                after: c["after"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|step| step.as_array().unwrap().iter().map(floats).collect())
                    .collect(),
            };
            assert_eq!(case.shapes.len(), 2, "{}", case.name);
            assert_eq!(case.grads.len(), steps, "{}", case.name);
            assert_eq!(case.after.len(), steps, "{}", case.name);
            case
        })
        .collect();
    // Every optimizer, each with more than one setting.
    for kind in ["sgd", "adam", "adamw", "rmsprop", "adadelta"] {
        let n = cases.iter().filter(|c| c.spec.name() == kind).count();
        assert!(n >= 2, "the fixture has {n} {kind} cases");
    }
    cases
}

/// The case's initial parameters: float64 leaves that require grad.
fn leaves(case: &Case) -> Vec<Tensor> {
    case.initial
        .iter()
        .zip(&case.shapes)
        .map(|(v, s)| {
            Tensor::from_slice(v)
                .view(s.as_slice())
                .set_requires_grad(true)
        })
        .collect()
}

/// Copies of `params` with the same values, as new leaves.
fn clones(params: &[Tensor]) -> Vec<Tensor> {
    params
        .iter()
        .map(|p| p.detach().copy().set_requires_grad(true))
        .collect()
}

fn shallow(params: &[Tensor]) -> Vec<Tensor> {
    params.iter().map(Tensor::shallow_clone).collect()
}

/// Gives each parameter the step's gradient: by a backward pass of sum(p * g) the first
/// time, then by copying into the gradient.
fn feed(params: &[Tensor], grads: &[Option<Vec<f64>>], shapes: &[Vec<i64>]) {
    for ((p, g), s) in params.iter().zip(grads).zip(shapes) {
        let Some(g) = g else {
            assert!(!p.grad().defined(), "a gradient cannot be taken away");
            continue;
        };
        let g = Tensor::from_slice(g).view(s.as_slice());
        let mut grad = p.grad();
        if grad.defined() {
            grad.copy_(&g);
        } else {
            (p * &g).sum(Kind::Double).backward();
        }
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.detach().flatten(0, -1)).unwrap()
}

fn run_against_torch(case: &Case, params: &[Tensor], step: &mut dyn FnMut()) {
    for (k, (grads, after)) in case.grads.iter().zip(&case.after).enumerate() {
        feed(params, grads, &case.shapes);
        step();
        for (i, (p, want)) in params.iter().zip(after).enumerate() {
            let worst = values(p)
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                worst < TOLERANCE,
                "{}: step {} param {i}: max |diff| {worst:e}",
                case.name,
                k + 1
            );
        }
    }
}

#[test]
fn every_optimizer_matches_torch_optim_step_for_step() {
    for case in cases() {
        let params = leaves(&case);
        let mut opt = Optimizer::from_params(&case.spec, shallow(&params), case.lr);
        run_against_torch(&case, &params, &mut || opt.step().unwrap());
        assert_eq!(opt.learning_rate(), case.lr);
    }
}

#[test]
fn the_adadelta_type_matches_torch_optim_adadelta() {
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.spec.name() == "adadelta")
        .collect();
    assert_eq!(cases.len(), 2);
    for case in &cases {
        let OptimizerSpec::AdaDelta {
            rho,
            eps,
            weight_decay,
        } = case.spec
        else {
            unreachable!()
        };
        let params = leaves(case);
        let mut opt = AdaDelta::new(shallow(&params), case.lr, rho, eps, weight_decay);
        run_against_torch(case, &params, &mut || opt.step().unwrap());
    }
    let opt: Optimizer = AdaDelta::new(leaves(&cases[0]), 1.0, 0.9, 1e-6, 0.0).into();
    assert_eq!(opt.spec().name(), "adadelta");
}

fn bits(params: &[Tensor]) -> Vec<Vec<u64>> {
    params
        .iter()
        .map(|p| values(p).into_iter().map(f64::to_bits).collect())
        .collect()
}

#[test]
fn state_round_trips_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        for save_at in [0, 1, 3] {
            let what = format!("{} saved after {save_at} steps", case.name);
            let params = leaves(&case);
            let mut opt = Optimizer::from_params(&case.spec, shallow(&params), case.lr);
            for grads in &case.grads[..save_at] {
                feed(&params, grads, &case.shapes);
                opt.step().unwrap();
            }
            // Through a safetensors file, as a checkpoint stores it.
            let path = dir.path().join("state.safetensors");
            Tensor::write_safetensors(&opt.state(), &path).unwrap();
            let saved = Tensor::read_safetensors(&path).unwrap();

            let resumed_params = clones(&params);
            let mut resumed = Optimizer::from_params(&case.spec, shallow(&resumed_params), case.lr);
            resumed.load_state(&saved).unwrap();
            assert_eq!(names(&resumed.state()), names(&opt.state()), "{what}");
            for grads in &case.grads[save_at..] {
                feed(&params, grads, &case.shapes);
                opt.step().unwrap();
                feed(&resumed_params, grads, &case.shapes);
                resumed.step().unwrap();
                assert_eq!(bits(&params), bits(&resumed_params), "{what}");
            }
            // Saving changed nothing either.
            assert_eq!(bits(&params), bits(&uninterrupted(&case)), "{what}");
        }
    }
}

/// The parameters after all the case's steps, with no state saved on the way.
fn uninterrupted(case: &Case) -> Vec<Tensor> {
    let params = leaves(case);
    let mut opt = Optimizer::from_params(&case.spec, shallow(&params), case.lr);
    for grads in &case.grads {
        feed(&params, grads, &case.shapes);
        opt.step().unwrap();
    }
    params
}

fn names(state: &[(String, Tensor)]) -> Vec<&str> {
    state.iter().map(|(n, _)| n.as_str()).collect()
}

fn entry<'a>(state: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &state.iter().find(|(n, _)| n == name).unwrap().1
}

fn case_named(name: &str) -> Case {
    cases().into_iter().find(|c| c.name == name).unwrap()
}

#[test]
fn state_holds_step_counts_and_buffers_made_at_each_first_gradient() {
    // Parameter 1 has no gradient before step 3.
    let case = case_named("adam_late_grad");
    let params = leaves(&case);
    let mut opt = Optimizer::from_params(&case.spec, shallow(&params), case.lr);
    assert_eq!(names(&opt.state()), ["step"]);
    for grads in &case.grads[..2] {
        feed(&params, grads, &case.shapes);
        opt.step().unwrap();
    }
    let state = opt.state();
    assert_eq!(
        names(&state),
        ["step", "param0.step", "param0.exp_avg", "param0.exp_avg_sq"]
    );
    feed(&params, &case.grads[2], &case.shapes);
    opt.step().unwrap();
    let state = opt.state();
    assert_eq!(
        names(&state),
        [
            "step",
            "param0.step",
            "param0.exp_avg",
            "param0.exp_avg_sq",
            "param1.step",
            "param1.exp_avg",
            "param1.exp_avg_sq"
        ]
    );
    for (name, want) in [("step", 3.0), ("param0.step", 3.0), ("param1.step", 1.0)] {
        let t = entry(&state, name);
        assert_eq!(t.size(), Vec::<i64>::new(), "{name}");
        assert_eq!(t.kind(), Kind::Double, "{name}");
        assert_eq!(t.double_value(&[]), want, "{name}");
    }
    assert_eq!(entry(&state, "param1.exp_avg").size(), [4]);
    assert_eq!(entry(&state, "param0.exp_avg_sq").size(), [3, 4]);

    // The entries are copies: a later step leaves them as they were.
    let before = values(entry(&state, "param0.exp_avg"));
    feed(&params, &case.grads[3], &case.shapes);
    opt.step().unwrap();
    assert_eq!(values(entry(&state, "param0.exp_avg")), before);

    // SGD with momentum: the buffer appears at the first gradient; without momentum there
    // is none.
    let case = case_named("sgd_momentum_late_grad");
    let params = leaves(&case);
    let mut opt = Optimizer::from_params(&case.spec, shallow(&params), case.lr);
    feed(&params, &case.grads[0], &case.shapes);
    opt.step().unwrap();
    let state = opt.state();
    assert_eq!(
        names(&state),
        ["step", "param0.step", "param0.momentum_buffer"]
    );
    let g0 = Tensor::from_slice(case.grads[0][0].as_ref().unwrap());
    assert_eq!(values(entry(&state, "param0.momentum_buffer")), values(&g0));
    let case = case_named("sgd_plain");
    let params = leaves(&case);
    let mut opt = Optimizer::from_params(&case.spec, shallow(&params), case.lr);
    feed(&params, &case.grads[0], &case.shapes);
    opt.step().unwrap();
    assert_eq!(names(&opt.state()), ["step", "param0.step", "param1.step"]);
}

#[test]
fn load_state_refuses_state_that_does_not_fit_and_changes_nothing() {
    let case = case_named("rmsprop_momentum_decay");
    let params = leaves(&case);
    let mut opt = Optimizer::from_params(&case.spec, shallow(&params), case.lr);
    feed(&params, &case.grads[0], &case.shapes);
    opt.step().unwrap();
    let early = opt.state();
    feed(&params, &case.grads[1], &case.shapes);
    opt.step().unwrap();
    let good = opt.state();
    let values_of =
        |s: &[(String, Tensor)]| -> Vec<Vec<f64>> { s.iter().map(|(_, t)| values(t)).collect() };

    // A refused load must leave the earlier state whole.
    let mut target = Optimizer::from_params(&case.spec, clones(&params), case.lr);
    target.load_state(&early).unwrap();
    let edit = |f: &dyn Fn(&mut State)| {
        let mut s: State = good
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        f(&mut s);
        s
    };
    let bad: Vec<(&str, State)> = vec![
        ("no step", edit(&|s| s.retain(|(n, _)| n != "step"))),
        (
            "a missing buffer",
            edit(&|s| s.retain(|(n, _)| n != "param1.momentum_buffer")),
        ),
        (
            "buffers without their step",
            edit(&|s| s.retain(|(n, _)| n != "param0.step")),
        ),
        (
            "a wrong shape",
            edit(&|s| {
                let i = s
                    .iter()
                    .position(|(n, _)| n == "param0.square_avg")
                    .unwrap();
                s[i].1 = Tensor::zeros([4, 3], (Kind::Double, Device::Cpu));
            }),
        ),
        (
            "an unknown buffer",
            edit(&|s| {
                s.push((
                    "param0.exp_avg".into(),
                    Tensor::zeros([3, 4], (Kind::Double, Device::Cpu)),
                ))
            }),
        ),
        (
            "a parameter that does not exist",
            edit(&|s| {
                s.push((
                    "param2.step".into(),
                    Tensor::scalar_tensor(1.0, (Kind::Double, Device::Cpu)),
                ))
            }),
        ),
        (
            "a non-canonical name",
            edit(&|s| {
                let i = s.iter().position(|(n, _)| n == "param0.step").unwrap();
                s[i].0 = "param00.step".into();
            }),
        ),
        (
            "a duplicate",
            edit(&|s| {
                s.push((
                    "step".into(),
                    Tensor::scalar_tensor(2.0, (Kind::Double, Device::Cpu)),
                ))
            }),
        ),
        (
            "a step that is not a count",
            edit(&|s| s[0].1 = Tensor::scalar_tensor(1.5, (Kind::Double, Device::Cpu))),
        ),
    ];
    for (what, state) in bad {
        assert!(target.load_state(&state).is_err(), "accepted {what}");
        let now = target.state();
        assert_eq!(names(&now), names(&early), "{what} changed the state");
        assert_eq!(
            values_of(&now),
            values_of(&early),
            "{what} changed the state"
        );
    }
    // State of another kind of optimizer.
    let mut adam = Optimizer::from_params(&OptimizerSpec::adam_default(), clones(&params), 0.1);
    assert!(adam.load_state(&good).is_err());

    target.load_state(&good).unwrap();
    assert_eq!(names(&target.state()), names(&good));
    assert_eq!(values_of(&target.state()), values_of(&good));
}

#[test]
fn the_learning_rate_can_change_between_steps() {
    let spec = OptimizerSpec::Sgd {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    let p = Tensor::from_slice(&[1.0f64, 2.0]).set_requires_grad(true);
    let mut opt = Optimizer::from_params(&spec, vec![p.shallow_clone()], 0.5);
    assert_eq!(opt.learning_rate(), 0.5);
    (&p * Tensor::from_slice(&[1.0f64, -1.0]))
        .sum(Kind::Double)
        .backward();
    opt.step().unwrap();
    assert_eq!(values(&p), [0.5, 2.5]);
    opt.set_learning_rate(0.25);
    assert_eq!(opt.learning_rate(), 0.25);
    opt.step().unwrap();
    assert_eq!(values(&p), [0.25, 2.75]);
    opt.zero_grad();
    opt.step().unwrap();
    assert_eq!(values(&p), [0.25, 2.75]);
}

#[test]
fn new_steps_the_var_store_trainable_variables_in_order() {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let a = root.ones("a", &[2]);
    let b = root.ones("b", &[3]);
    let frozen = root.ones_no_train("frozen", &[1]);
    let spec = OptimizerSpec::adam_default();
    let mut opt = Optimizer::new(&spec, &vs, 0.1).unwrap();
    opt.zero_grad();
    ((&a * 2.0).sum(Kind::Float) + (&b * 3.0).sum(Kind::Float) + frozen.sum(Kind::Float))
        .backward();
    opt.step().unwrap();
    // Adam's first step moves each parameter by lr against the gradient's sign.
    for (t, n) in [(&a, 2), (&b, 3)] {
        let got = Vec::<f32>::try_from(&t.detach()).unwrap();
        assert_eq!(got.len(), n);
        assert!(got.iter().all(|v| (v - 0.9).abs() < 1e-6), "{got:?}");
    }
    let state = opt.state();
    assert_eq!(entry(&state, "param0.exp_avg").size(), [2]);
    assert_eq!(entry(&state, "param1.exp_avg").size(), [3]);
    assert_eq!(entry(&state, "param1.exp_avg").kind(), Kind::Float);
    assert!(!names(&state).iter().any(|n| n.starts_with("param2")));
}
