//! `Scheduler` against PyTorch: the fixture holds the lr PyTorch used at every optimizer step
//! of each case (regenerate with `tests/fixtures/make_lr_fixture.py`).

use std::path::PathBuf;

use gradstream::domain::validate_schedule as validate;
use gradstream::engine::schedule::{LrSchedule, Scheduler, SchedulerState};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    schedule: LrSchedule,
    base_lr: f64,
    epochs: u32,
    steps_per_epoch: u32,
    metrics: Option<Vec<f64>>,
    lrs: Vec<f64>,
}

impl Case {
    fn metric(&self, epoch: u32) -> Option<f64> {
        self.metrics.as_ref().map(|m| m[epoch as usize])
    }

    fn scheduler(&self) -> Scheduler {
        Scheduler::new(
            self.schedule,
            self.base_lr,
            self.epochs,
            self.steps_per_epoch,
        )
    }
}

fn load() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lr_schedules.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let fixture: Fixture = serde_json::from_str(&text).expect("parsing lr_schedules.json");
    assert!(!fixture.cases.is_empty());
    fixture.cases
}

/// Every lr the scheduler hands out over a whole run, with (epoch, step in epoch).
fn run(case: &Case, mut sched: Scheduler, from_step: u64) -> Vec<(u32, u32, f64)> {
    let mut out = Vec::new();
    let spe = u64::from(case.steps_per_epoch);
    for global in from_step..u64::from(case.epochs) * spe {
        let (epoch, step) = ((global / spe) as u32, (global % spe) as u32);
        out.push((epoch, step, sched.lr()));
        sched.after_step();
        if step + 1 == case.steps_per_epoch {
            sched.after_epoch(case.metric(epoch));
        }
    }
    out
}

#[test]
fn matches_pytorch() {
    let cases = load();
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for case in &cases {
        kinds.insert(
            format!("{:?}", case.schedule)
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_string(),
        );
        validate(&case.schedule, case.epochs).unwrap_or_else(|e| panic!("case {}: {e}", case.name));
        assert_eq!(
            case.lrs.len() as u64,
            u64::from(case.epochs) * u64::from(case.steps_per_epoch),
            "{}",
            case.name
        );
        for ((epoch, step, got), &want) in run(case, case.scheduler(), 0).into_iter().zip(&case.lrs)
        {
            let rel = (got - want).abs() / want.abs().max(f64::MIN_POSITIVE);
            if rel.is_nan() || rel > 1e-12 {
                failures.push(format!(
                    "case {} epoch {epoch} step {step}: lr {got:e}, PyTorch {want:e} (rel diff {rel:e})",
                    case.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        kinds.len(),
        6,
        "fixture should cover every schedule, has {kinds:?}"
    );
}

#[test]
fn state_restore_continues_identically() {
    for case in load() {
        let total = u64::from(case.epochs) * u64::from(case.steps_per_epoch);
        let reference = run(&case, case.scheduler(), 0);
        // Split mid-epoch, at an epoch boundary, and right at the start.
        let splits = [
            total / 2 + 1,
            u64::from(case.steps_per_epoch) * u64::from(case.epochs / 2),
            0,
        ];
        for split in splits.into_iter().filter(|&s| s < total) {
            // Run the first part, save the state through JSON, continue in a fresh scheduler.
            let mut first = case.scheduler();
            let spe = u64::from(case.steps_per_epoch);
            for global in 0..split {
                first.after_step();
                if (global + 1) % spe == 0 {
                    first.after_epoch(case.metric((global / spe) as u32));
                }
            }
            let json = serde_json::to_string(&first.state()).unwrap();
            let state: SchedulerState = serde_json::from_str(&json).unwrap();
            assert_eq!(
                state,
                first.state(),
                "case {} split {split}: state JSON round trip ({json})",
                case.name
            );
            let mut resumed = case.scheduler();
            resumed.restore(&state);
            let tail = run(&case, resumed, split);
            for ((epoch, step, got), (_, _, want)) in
                tail.into_iter().zip(&reference[split as usize..])
            {
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "case {} resumed at step {split}: epoch {epoch} step {step}: {got:e} != {want:e}",
                    case.name
                );
            }
            let via_from_state = Scheduler::from_state(
                case.schedule,
                case.base_lr,
                case.epochs,
                case.steps_per_epoch,
                &state,
            );
            assert_eq!(via_from_state.state(), state);
        }
    }
}

#[test]
fn state_serializes_infinite_best_exactly() {
    let sched = Scheduler::new(
        LrSchedule::ReduceOnPlateau {
            maximize: false,
            factor: 0.1,
            patience: 2,
            threshold: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        },
        0.1,
        10,
        1,
    );
    let json = serde_json::to_string(&sched.state()).unwrap();
    assert!(json.contains(r#""best":"inf""#), "{json}");
    assert!(json.contains(r#""lr":"0.1""#), "{json}");
    let back: SchedulerState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sched.state());
}

#[test]
fn plateau_without_metric_changes_nothing() {
    let schedule = LrSchedule::ReduceOnPlateau {
        maximize: true,
        factor: 0.5,
        patience: 0,
        threshold: 0.0,
        cooldown: 0,
        min_lr: 0.0,
    };
    let mut s = Scheduler::new(schedule, 0.1, 5, 1);
    s.after_epoch(Some(1.0));
    s.after_epoch(Some(0.5));
    assert_eq!(s.lr(), 0.05);
    let before = s.state();
    s.after_epoch(None);
    assert_eq!(s.lr(), 0.05);
    assert_eq!(s.state().num_bad_epochs, before.num_bad_epochs);
    assert_eq!(s.state().epoch, before.epoch + 1);
}

#[test]
fn one_cycle_single_step_warmup_is_finite() {
    // pct_start * total_steps == 1: PyTorch divides by zero here; we start at max_lr.
    let schedule = LrSchedule::OneCycle {
        pct_start: 0.25,
        div_factor: 25.0,
        final_div_factor: 1e4,
    };
    let mut s = Scheduler::new(schedule, 0.1, 2, 2);
    assert_eq!(s.lr(), 0.1);
    for _ in 0..4 {
        assert!(s.lr().is_finite() && s.lr() > 0.0);
        s.after_step();
    }
}

/// The error as "<field> <message>".
fn err(schedule: LrSchedule, epochs: u32) -> String {
    let e = validate(&schedule, epochs).expect_err("should be rejected");
    format!("{} {}", e.field, e.message)
}

#[test]
fn validate_accepts_defaults_and_edges() {
    for s in [
        LrSchedule::Constant,
        LrSchedule::Step {
            step_size: 1,
            gamma: 1.0,
        },
        LrSchedule::Exponential { gamma: 1.0 },
        LrSchedule::Cosine {
            warmup_epochs: 0,
            warmup_start_factor: 1.0,
            eta_min: 0.0,
        },
        LrSchedule::Cosine {
            warmup_epochs: 9,
            warmup_start_factor: 0.01,
            eta_min: 1e-6,
        },
        LrSchedule::OneCycle {
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        },
        LrSchedule::ReduceOnPlateau {
            maximize: true,
            factor: 0.1,
            patience: 0,
            threshold: 0.0,
            cooldown: 0,
            min_lr: 0.0,
        },
    ] {
        assert_eq!(validate(&s, 10), Ok(()), "{s:?}");
    }
}

#[test]
fn validate_names_field_and_fix() {
    let cases: Vec<(LrSchedule, u32, &str, &str)> = vec![
        (
            LrSchedule::Step {
                step_size: 0,
                gamma: 0.1,
            },
            10,
            "spec.lr_schedule.step_size",
            "at least 1",
        ),
        (
            LrSchedule::Step {
                step_size: 3,
                gamma: 0.0,
            },
            10,
            "spec.lr_schedule.gamma",
            "(0, 1]",
        ),
        (
            LrSchedule::Step {
                step_size: 3,
                gamma: 1.5,
            },
            10,
            "spec.lr_schedule.gamma",
            "(0, 1]",
        ),
        (
            LrSchedule::Exponential { gamma: f64::NAN },
            10,
            "spec.lr_schedule.gamma",
            "(0, 1]",
        ),
        (
            LrSchedule::Exponential { gamma: -0.5 },
            10,
            "spec.lr_schedule.gamma",
            "(0, 1]",
        ),
        (
            LrSchedule::Cosine {
                warmup_epochs: 10,
                warmup_start_factor: 0.1,
                eta_min: 0.0,
            },
            10,
            "spec.lr_schedule.warmup_epochs",
            "below spec.epochs (10)",
        ),
        (
            LrSchedule::Cosine {
                warmup_epochs: 0,
                warmup_start_factor: 0.1,
                eta_min: 0.0,
            },
            0,
            "spec.lr_schedule.warmup_epochs",
            "below spec.epochs (0)",
        ),
        (
            LrSchedule::Cosine {
                warmup_epochs: 2,
                warmup_start_factor: 0.0,
                eta_min: 0.0,
            },
            10,
            "spec.lr_schedule.warmup_start_factor",
            "(0, 1]",
        ),
        (
            LrSchedule::Cosine {
                warmup_epochs: 2,
                warmup_start_factor: 1.01,
                eta_min: 0.0,
            },
            10,
            "spec.lr_schedule.warmup_start_factor",
            "(0, 1]",
        ),
        (
            LrSchedule::Cosine {
                warmup_epochs: 2,
                warmup_start_factor: 0.5,
                eta_min: -1e-5,
            },
            10,
            "spec.lr_schedule.eta_min",
            ">= 0",
        ),
        (
            LrSchedule::Cosine {
                warmup_epochs: 2,
                warmup_start_factor: 0.5,
                eta_min: f64::INFINITY,
            },
            10,
            "spec.lr_schedule.eta_min",
            "finite",
        ),
        (
            LrSchedule::OneCycle {
                pct_start: 0.0,
                div_factor: 25.0,
                final_div_factor: 1e4,
            },
            10,
            "spec.lr_schedule.pct_start",
            "(0, 1)",
        ),
        (
            LrSchedule::OneCycle {
                pct_start: 1.0,
                div_factor: 25.0,
                final_div_factor: 1e4,
            },
            10,
            "spec.lr_schedule.pct_start",
            "(0, 1)",
        ),
        (
            LrSchedule::OneCycle {
                pct_start: 0.3,
                div_factor: 0.0,
                final_div_factor: 1e4,
            },
            10,
            "spec.lr_schedule.div_factor",
            "> 0",
        ),
        (
            LrSchedule::OneCycle {
                pct_start: 0.3,
                div_factor: 25.0,
                final_div_factor: -1.0,
            },
            10,
            "spec.lr_schedule.final_div_factor",
            "> 0",
        ),
        (
            LrSchedule::ReduceOnPlateau {
                maximize: false,
                factor: 1.0,
                patience: 1,
                threshold: 0.0,
                cooldown: 0,
                min_lr: 0.0,
            },
            10,
            "spec.lr_schedule.factor",
            "(0, 1)",
        ),
        (
            LrSchedule::ReduceOnPlateau {
                maximize: false,
                factor: 0.0,
                patience: 1,
                threshold: 0.0,
                cooldown: 0,
                min_lr: 0.0,
            },
            10,
            "spec.lr_schedule.factor",
            "(0, 1)",
        ),
        (
            LrSchedule::ReduceOnPlateau {
                maximize: false,
                factor: 0.5,
                patience: 1,
                threshold: 0.0,
                cooldown: 0,
                min_lr: -1e-6,
            },
            10,
            "spec.lr_schedule.min_lr",
            ">= 0",
        ),
        (
            LrSchedule::ReduceOnPlateau {
                maximize: false,
                factor: 0.5,
                patience: 1,
                threshold: -0.1,
                cooldown: 0,
                min_lr: 0.0,
            },
            10,
            "spec.lr_schedule.threshold",
            ">= 0",
        ),
    ];
    for (schedule, epochs, field, fix) in cases {
        let msg = err(schedule, epochs);
        assert!(
            msg.starts_with(&format!("{field} is ")),
            "{schedule:?}: {msg}"
        );
        assert!(
            msg.contains(fix),
            "{schedule:?}: {msg:?} should say {fix:?}"
        );
        assert!(
            msg.contains("set it"),
            "{schedule:?}: {msg:?} should say what to change"
        );
    }
}
