//! Compares `metrics::evaluate` and `metrics::curves` against scikit-learn on
//! randomly generated cases (binary and multiclass, heavy ties, single-class
//! folds, empty classes, exact 0/1 probabilities).
//!
//! The cases are written to a temporary JSON file and scored by
//! `tests/reference/sklearn_metrics.py`, run with the interpreter named by the
//! `GRADSTREAM_PYTHON` environment variable, or else
//! `<CARGO_MANIFEST_DIR>/.venv/bin/python`. The test fails (it does not skip)
//! when that interpreter cannot run the script.

mod common;

use common::rng::Rng;
use gradstream::metrics::{self, curves};

use serde_json::{Value, json};
use std::path::Path;

/// Cases generated; the test asserts at least 400.
const N_CASES: usize = 480;
/// Absolute tolerance, relative for values above 1 in magnitude.
const TOL: f64 = 1e-9;

struct Case {
    kind: String,
    k: usize,
    actual: Vec<usize>,
    /// Row-major `n x k`.
    probs: Vec<f32>,
    target_recall: Option<f64>,
}

fn softmax(logits: &[f64]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

fn generate_case(rng: &mut Rng, index: usize) -> Case {
    // Half binary, half multiclass k = 3..6.
    let k = if index.is_multiple_of(2) {
        2
    } else {
        3 + rng.below(4)
    };
    let n = match rng.below(6) {
        0 => 1 + rng.below(3),
        1 => 1 + rng.below(10),
        2 | 3 => 1 + rng.below(60),
        _ => 1 + rng.below(300),
    };

    // Class layout.
    let layout = rng.below(6);
    let (actual, layout_name): (Vec<usize>, &str) = match layout {
        0 => {
            let c = rng.below(k);
            (vec![c; n], "single-class")
        }
        1 => {
            // One class never occurs.
            let missing = rng.below(k);
            let present: Vec<usize> = (0..k).filter(|&c| c != missing).collect();
            (
                (0..n).map(|_| present[rng.below(present.len())]).collect(),
                "empty-class",
            )
        }
        2 => {
            // Imbalanced: class 0 dominates, others rare.
            (
                (0..n)
                    .map(|_| {
                        if rng.chance(0.85) {
                            0
                        } else {
                            1 + rng.below(k - 1)
                        }
                    })
                    .collect(),
                "imbalanced",
            )
        }
        _ => ((0..n).map(|_| rng.below(k)).collect(), "uniform"),
    };

    // Probability style.
    let style = rng.below(5);
    let mut probs = Vec::with_capacity(n * k);
    let style_name = match style {
        0 => "continuous",
        1 => "quantised",
        2 => "extreme",
        3 => "mixed",
        _ => "informative",
    };
    let levels = 1 + rng.below(4); // quantisation levels for "quantised"
    for &a in &actual {
        let row: Vec<f32> = match style {
            0 => softmax(&(0..k).map(|_| 4.0 * rng.unit() - 2.0).collect::<Vec<_>>()),
            1 => {
                if k == 2 {
                    // p1 on a coarse grid, p0 = 1 - p1 (exact in f32 for these grids).
                    let p1 = rng.below(levels + 1) as f32 / levels as f32;
                    vec![1.0 - p1, p1]
                } else {
                    // Small integer weights, normalised: few distinct values.
                    let w: Vec<f64> = (0..k).map(|_| rng.below(levels + 1) as f64).collect();
                    let sum: f64 = w.iter().sum();
                    if sum == 0.0 {
                        vec![1.0 / k as f32; k]
                    } else {
                        w.iter().map(|&x| (x / sum) as f32).collect()
                    }
                }
            }
            2 => {
                // One-hot rows: the true class with probability 0.6, else another.
                let hot = if rng.chance(0.6) { a } else { rng.below(k) };
                (0..k).map(|c| if c == hot { 1.0 } else { 0.0 }).collect()
            }
            3 => {
                if rng.chance(0.3) {
                    let hot = rng.below(k);
                    (0..k).map(|c| if c == hot { 1.0 } else { 0.0 }).collect()
                } else {
                    softmax(&(0..k).map(|_| 6.0 * rng.unit() - 3.0).collect::<Vec<_>>())
                }
            }
            _ => {
                // Informative logits, rounded to 2 decimals so ties occur.
                let logits: Vec<f64> = (0..k)
                    .map(|c| {
                        let l = 3.0 * rng.unit() + if c == a { 1.5 } else { 0.0 };
                        (l * 4.0).round() / 4.0
                    })
                    .collect();
                softmax(&logits)
            }
        };
        probs.extend(row);
    }

    let target_recall = match rng.below(8) {
        0 => None,
        1 => Some(0.0),
        2 => Some(1.0),
        3 => Some(1.5),
        4 => Some(0.5),
        5 => Some(0.9),
        // A reachable fraction j / n_pos, to exercise exact float comparisons.
        6 => {
            let n_pos = actual.iter().filter(|&&a| a == 1).count().max(1);
            Some(rng.below(n_pos + 1) as f64 / n_pos as f64)
        }
        _ => Some(rng.unit()),
    };

    Case {
        kind: format!("k={k} n={n} {layout_name} {style_name}"),
        k,
        actual,
        probs,
        target_recall,
    }
}

/// Runs the reference script on `cases`; panics with details when it cannot.
fn sklearn_results(cases: &[Case]) -> Vec<Value> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("metrics_reference_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let input = dir.join("cases.json");
    let output = dir.join("sklearn.json");
    let cases_json: Vec<Value> = cases
        .iter()
        .map(|c| {
            // Widen to f64 so Python reads exactly the f32 values.
            let rows: Vec<Vec<f64>> = c
                .probs
                .chunks_exact(c.k)
                .map(|r| r.iter().map(|&p| f64::from(p)).collect())
                .collect();
            json!({"k": c.k, "actual": c.actual, "probs": rows, "target_recall": c.target_recall})
        })
        .collect();
    std::fs::write(&input, json!({ "cases": cases_json }).to_string()).expect("write cases");

    common::run_reference("sklearn_metrics.py", &[&input, &output]);
    let text = std::fs::read_to_string(&output).expect("read reference output");
    let _ = std::fs::remove_dir_all(&dir);
    let mut value: Value = serde_json::from_str(&text).expect("reference output is JSON");
    eprintln!("scikit-learn {}", value["sklearn_version"]);
    match value["results"].take() {
        Value::Array(results) => results,
        other => panic!("reference output has no results array: {other}"),
    }
}

/// A JSON float as written by the script ("inf" / "-inf" / "nan" strings).
fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("finite number"),
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        other => panic!("not a float: {other}"),
    }
}

/// Collects every comparison; reports all mismatches at the end.
struct Checker {
    compared: usize,
    failures: Vec<String>,
}

impl Checker {
    fn fail(&mut self, case: usize, kind: &str, metric: &str, ours: String, theirs: String) {
        self.failures.push(format!(
            "case {case} ({kind}) {metric}: ours {ours}, sklearn {theirs}"
        ));
    }

    fn float(&mut self, case: usize, kind: &str, metric: &str, ours: f64, theirs: f64) {
        self.compared += 1;
        let ok = if ours.is_nan() || theirs.is_nan() {
            ours.is_nan() && theirs.is_nan()
        } else if ours.is_infinite() || theirs.is_infinite() {
            ours == theirs
        } else {
            (ours - theirs).abs() <= TOL * ours.abs().max(theirs.abs()).max(1.0)
        };
        if !ok {
            self.fail(
                case,
                kind,
                metric,
                format!("{ours:?}"),
                format!("{theirs:?}"),
            );
        }
    }

    /// `ours` must be `None` exactly where sklearn's value is `null`.
    fn opt(&mut self, case: usize, kind: &str, metric: &str, ours: Option<f64>, theirs: &Value) {
        match (ours, theirs.is_null()) {
            (Some(a), false) => self.float(case, kind, metric, a, num(theirs)),
            (None, true) => self.compared += 1,
            _ => self.fail(case, kind, metric, format!("{ours:?}"), theirs.to_string()),
        }
    }

    fn floats(&mut self, case: usize, kind: &str, metric: &str, ours: &[f64], theirs: &Value) {
        let theirs = theirs.as_array().expect("array");
        if ours.len() != theirs.len() {
            self.fail(
                case,
                kind,
                &format!("{metric} length"),
                format!("{} {ours:?}", ours.len()),
                format!("{} {theirs:?}", theirs.len()),
            );
            return;
        }
        for (i, (&a, b)) in ours.iter().zip(theirs).enumerate() {
            self.float(case, kind, &format!("{metric}[{i}]"), a, num(b));
        }
    }

    fn counts(&mut self, case: usize, kind: &str, metric: &str, ours: &[u64], theirs: &Value) {
        self.compared += 1;
        let theirs: Vec<u64> = theirs
            .as_array()
            .expect("array")
            .iter()
            .map(|v| v.as_u64().expect("count"))
            .collect();
        if ours != theirs.as_slice() {
            self.fail(
                case,
                kind,
                metric,
                format!("{ours:?}"),
                format!("{theirs:?}"),
            );
        }
    }

    fn point(
        &mut self,
        case: usize,
        kind: &str,
        metric: &str,
        ours: Option<&curves::ThresholdPoint>,
        theirs: &Value,
    ) {
        match (ours, theirs.is_null()) {
            (None, true) => self.compared += 1,
            (Some(p), false) => {
                self.float(
                    case,
                    kind,
                    &format!("{metric}.threshold"),
                    p.threshold,
                    num(&theirs["threshold"]),
                );
                self.float(
                    case,
                    kind,
                    &format!("{metric}.precision"),
                    p.precision,
                    num(&theirs["precision"]),
                );
                self.float(
                    case,
                    kind,
                    &format!("{metric}.recall"),
                    p.recall,
                    num(&theirs["recall"]),
                );
                self.float(
                    case,
                    kind,
                    &format!("{metric}.f1"),
                    p.f1,
                    num(&theirs["f1"]),
                );
                self.counts(
                    case,
                    kind,
                    &format!("{metric}.confusion"),
                    &p.confusion,
                    &theirs["confusion"],
                );
            }
            _ => self.fail(case, kind, metric, format!("{ours:?}"), theirs.to_string()),
        }
    }
}

fn check_case(ch: &mut Checker, i: usize, case: &Case, sk: &Value) {
    let kind = case.kind.as_str();
    let k = case.k;
    let labels: Vec<String> = (0..k).map(|c| format!("c{c}")).collect();
    let ev = curves::full_report(&labels, &case.actual, &case.probs, 0.0, case.target_recall);
    let m = &ev.metrics;

    // Existing `evaluate` metrics.
    ch.opt(i, kind, "accuracy", Some(m.accuracy), &sk["accuracy"]);
    ch.counts(
        i,
        kind,
        "confusion_matrix",
        &m.confusion_matrix.counts,
        &sk["confusion_matrix"],
    );
    for (c, pc) in m.per_class.iter().enumerate() {
        ch.float(
            i,
            kind,
            &format!("precision[{c}]"),
            pc.precision,
            num(&sk["precision"][c]),
        );
        ch.float(
            i,
            kind,
            &format!("recall[{c}]"),
            pc.recall,
            num(&sk["recall"][c]),
        );
        ch.float(i, kind, &format!("f1[{c}]"), pc.f1, num(&sk["f1"][c]));
        ch.counts(
            i,
            kind,
            &format!("support[{c}]"),
            &[pc.support],
            &json!([sk["support"][c]]),
        );
        ch.opt(
            i,
            kind,
            &format!("roc_auc[{c}]"),
            pc.roc_auc,
            &sk["per_class"][c]["roc_auc"],
        );
    }
    for (name, ours) in [("macro", &m.macro_avg), ("weighted", &m.weighted)] {
        let theirs = &sk[name];
        ch.float(
            i,
            kind,
            &format!("{name}.precision"),
            ours.precision,
            num(&theirs[0]),
        );
        ch.float(
            i,
            kind,
            &format!("{name}.recall"),
            ours.recall,
            num(&theirs[1]),
        );
        ch.float(i, kind, &format!("{name}.f1"), ours.f1, num(&theirs[2]));
    }
    let overall_auc = if k == 2 {
        sk["per_class"][1]["roc_auc"].clone()
    } else {
        let defined: Vec<f64> = (0..k)
            .map(|c| &sk["per_class"][c]["roc_auc"])
            .filter(|v| !v.is_null())
            .map(num)
            .collect();
        if defined.is_empty() {
            Value::Null
        } else {
            json!(defined.iter().sum::<f64>() / defined.len() as f64)
        }
    };
    ch.opt(i, kind, "roc_auc", m.roc_auc, &overall_auc);
    if !sk["sklearn_ovr_macro_roc_auc"].is_null() {
        ch.opt(
            i,
            kind,
            "roc_auc (sklearn ovr macro)",
            m.roc_auc,
            &sk["sklearn_ovr_macro_roc_auc"],
        );
    }

    // Curves.
    assert_eq!(
        ev.metrics.curves.len(),
        k,
        "case {i}: one curve set per class"
    );
    for (c, cc) in ev.metrics.curves.iter().enumerate() {
        let theirs = &sk["per_class"][c];
        assert_eq!(cc.label, labels[c]);
        match (&cc.roc, &theirs["roc"]) {
            (None, Value::Null) => ch.compared += 1,
            (Some(r), t) if !t.is_null() => {
                ch.floats(i, kind, &format!("roc[{c}].fpr"), &r.fpr, &t["fpr"]);
                ch.floats(i, kind, &format!("roc[{c}].tpr"), &r.tpr, &t["tpr"]);
                ch.floats(
                    i,
                    kind,
                    &format!("roc[{c}].thresholds"),
                    &r.thresholds,
                    &t["thresholds"],
                );
            }
            (ours, t) => ch.fail(
                i,
                kind,
                &format!("roc[{c}]"),
                format!("{ours:?}"),
                t.to_string(),
            ),
        }
        match (&cc.pr, &theirs["pr"]) {
            (None, Value::Null) => ch.compared += 1,
            (Some(p), t) if !t.is_null() => {
                ch.floats(
                    i,
                    kind,
                    &format!("pr[{c}].precision"),
                    &p.precision,
                    &t["precision"],
                );
                ch.floats(i, kind, &format!("pr[{c}].recall"), &p.recall, &t["recall"]);
                ch.floats(
                    i,
                    kind,
                    &format!("pr[{c}].thresholds"),
                    &p.thresholds,
                    &t["thresholds"],
                );
                let ap = &t["average_precision"];
                ch.float(
                    i,
                    kind,
                    &format!("average_precision[{c}]"),
                    p.average_precision,
                    num(ap),
                );
            }
            (ours, t) => ch.fail(
                i,
                kind,
                &format!("pr[{c}]"),
                format!("{ours:?}"),
                t.to_string(),
            ),
        }
        // Downsampling keeps the ends and the alignment.
        if let Some(r) = &cc.roc {
            let d = r.downsample(7);
            assert!(
                d.fpr.len() <= 7 && d.fpr.len() == d.tpr.len() && d.tpr.len() == d.thresholds.len()
            );
            assert_eq!((d.fpr[0], d.thresholds[0]), (r.fpr[0], r.thresholds[0]));
            assert_eq!(d.fpr.last(), r.fpr.last());
        }
        if let Some(p) = &cc.pr {
            let d = p.downsample(7);
            assert!(d.precision.len() <= 7 && d.precision.len() == d.recall.len());
            assert_eq!(d.thresholds.len() + 1, d.precision.len());
            assert_eq!(
                (d.recall[0], d.thresholds[0]),
                (p.recall[0], p.thresholds[0])
            );
            assert_eq!(
                (d.precision.last(), d.recall.last()),
                (Some(&1.0), Some(&0.0))
            );
        }
    }
    ch.opt(
        i,
        kind,
        "macro_average_precision",
        ev.metrics.average_precision,
        &sk["macro_average_precision"],
    );
    if !sk["sklearn_macro_average_precision"].is_null() {
        let theirs = &sk["sklearn_macro_average_precision"];
        ch.opt(
            i,
            kind,
            "macro_average_precision (sklearn)",
            ev.metrics.average_precision,
            theirs,
        );
    }

    // Scores.
    ch.opt(
        i,
        kind,
        "balanced_accuracy",
        ev.balanced_accuracy,
        &sk["balanced_accuracy"],
    );
    ch.opt(i, kind, "mcc", ev.mcc, &sk["mcc"]);
    ch.opt(i, kind, "log_loss", ev.log_loss, &sk["log_loss"]);
    ch.opt(i, kind, "brier", ev.brier, &sk["brier"]);
    // The standalone functions agree with the report.
    let predicted = metrics::argmax_rows(&case.probs, k);
    let standalone = [
        (
            "macro_average_precision",
            curves::macro_average_precision(&case.actual, &case.probs, k),
            ev.metrics.average_precision,
        ),
        (
            "metrics.average_precision",
            m.average_precision,
            ev.metrics.average_precision,
        ),
        (
            "balanced_accuracy",
            curves::balanced_accuracy(k, &case.actual, &predicted),
            ev.balanced_accuracy,
        ),
        (
            "mcc",
            curves::matthews_corrcoef(k, &case.actual, &predicted),
            ev.mcc,
        ),
    ];
    for (name, direct, report) in standalone {
        ch.compared += 1;
        if direct.map(f64::to_bits) != report.map(f64::to_bits) {
            ch.fail(
                i,
                kind,
                &format!("{name} (standalone vs report)"),
                format!("{direct:?}"),
                format!("{report:?}"),
            );
        }
    }

    // Binary operating points.
    match (&ev.threshold_report, &sk["threshold_report"]) {
        (None, Value::Null) => assert_ne!(k, 2),
        (Some(r), t) if !t.is_null() => {
            assert_eq!(r.target_recall, case.target_recall);
            ch.point(i, kind, "best_f1", r.best_f1.as_ref(), &t["best_f1"]);
            ch.point(
                i,
                kind,
                "at_target_recall",
                r.at_target_recall.as_ref(),
                &t["at_target_recall"],
            );
        }
        (ours, t) => ch.fail(
            i,
            kind,
            "threshold_report",
            format!("{ours:?}"),
            t.to_string(),
        ),
    }
}

#[test]
fn matches_scikit_learn_on_random_cases() {
    let mut rng = Rng(0x6772_6164_7374_7265); // "gradstre"
    let cases: Vec<Case> = (0..N_CASES).map(|i| generate_case(&mut rng, i)).collect();
    assert!(cases.len() >= 400);
    let results = sklearn_results(&cases);
    assert_eq!(results.len(), cases.len(), "one reference result per case");

    let mut ch = Checker {
        compared: 0,
        failures: Vec::new(),
    };
    for (i, (case, sk)) in cases.iter().zip(&results).enumerate() {
        check_case(&mut ch, i, case, sk);
    }
    eprintln!("{} cases, {} values compared", cases.len(), ch.compared);
    assert!(
        ch.failures.is_empty(),
        "{} mismatches against scikit-learn (first 50):\n{}",
        ch.failures.len(),
        ch.failures
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
