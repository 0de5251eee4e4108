//! What a committed job event becomes in TensorBoard: scalars (`Summary.Value.simple_value`)
//! and PR curves (the `pr_curves` plugin's `[6, NUM_THRESHOLDS]` tensor), each with its
//! step. Tags are prefixed by the run: none for the job's own model, `member<m>/` for an
//! ensemble's member `m`, `ensemble/` for the ensemble's own evaluation.

use prost::Message;

use super::proto::{
    DT_FLOAT, Dim, PluginData, PrCurvePluginData, SummaryMetadata, TensorProto, TensorShapeProto,
    Value, ValueKind,
};
use crate::domain::{EventKind, JobEvent, RunId};
use crate::metrics::Metrics;
use crate::metrics::curves::ClassCurves;

/// Thresholds of an exported PR curve: 0, 1/(n-1), …, 1.
pub const NUM_THRESHOLDS: usize = 101;
/// TensorBoard's floor for the denominators of precision and recall.
const MINIMUM_COUNT: f64 = 1e-7;

/// The summaries of one event, all at one step; empty for an event with none (statuses).
pub fn of(event: &JobEvent) -> Option<(i64, Vec<Value>)> {
    match &event.kind {
        EventKind::Iteration(p) => {
            let prefix = prefix(event.run, false);
            Some((
                p.global_step as i64,
                vec![
                    scalar(format!("{prefix}loss/iteration"), p.loss),
                    scalar(format!("{prefix}learning_rate"), p.learning_rate),
                ],
            ))
        }
        EventKind::Epoch(end) => {
            let prefix = prefix(event.run, end.ensemble);
            let mut values = split_scalars(&prefix, "train", &end.train);
            if let Some(v) = &end.validation {
                values.extend(split_scalars(&prefix, "validation", v));
            }
            let curves_of = end.selection_metrics();
            let split = if end.validation.is_some() {
                "validation"
            } else {
                "train"
            };
            values.extend(
                curves_of
                    .curves
                    .iter()
                    .enumerate()
                    .filter_map(|(class, c)| pr_curve(&prefix, split, curves_of, class, c)),
            );
            Some((i64::from(end.epoch), values))
        }
        EventKind::RangePoint(p) => Some((
            i64::from(p.iteration),
            vec![
                scalar("range_test/loss".into(), p.loss),
                scalar("range_test/smoothed_loss".into(), p.smoothed_loss),
                scalar("range_test/learning_rate".into(), p.learning_rate),
            ],
        )),
        EventKind::Status { .. } | EventKind::RangeResult(_) => None,
    }
}

fn prefix(run: RunId, ensemble: bool) -> String {
    if ensemble {
        "ensemble/".into()
    } else if run == RunId::JOB {
        String::new()
    } else {
        format!("member{run}/")
    }
}

/// Loss, accuracy, macro F1 and, where defined, ROC AUC and average precision of one split.
fn split_scalars(prefix: &str, split: &str, m: &Metrics) -> Vec<Value> {
    let mut values = vec![
        scalar(format!("{prefix}loss/{split}"), m.loss),
        scalar(format!("{prefix}accuracy/{split}"), m.accuracy),
        scalar(format!("{prefix}f1_macro/{split}"), m.macro_avg.f1),
    ];
    if let Some(auc) = m.roc_auc {
        values.push(scalar(format!("{prefix}roc_auc/{split}"), auc));
    }
    if let Some(ap) = m.average_precision {
        values.push(scalar(format!("{prefix}average_precision/{split}"), ap));
    }
    values
}

fn scalar(tag: String, value: f64) -> Value {
    Value {
        tag,
        metadata: None,
        value: Some(ValueKind::SimpleValue(value as f32)),
    }
}

/// Class `class`'s PR curve as the `pr_curves` plugin stores it: rows TP, FP, TN, FN,
/// precision, recall at thresholds `i / (NUM_THRESHOLDS - 1)` (a row is predicted positive
/// when its score is at least the threshold). The counts are rebuilt from the event's
/// curve: exact at every threshold the curve keeps (all distinct scores, unless the curve
/// was downsampled); where no row reaches a threshold, nothing is predicted positive.
fn pr_curve(
    prefix: &str,
    split: &str,
    metrics: &Metrics,
    class: usize,
    curves: &ClassCurves,
) -> Option<Value> {
    let pr = curves.pr.as_ref()?;
    let k = metrics.confusion_matrix.labels.len();
    let counts = &metrics.confusion_matrix.counts;
    let total: u64 = counts.iter().sum();
    let positives: u64 = counts.get(class * k..(class + 1) * k)?.iter().sum();
    let (n_pos, n_neg) = (positives as f64, (total - positives) as f64);
    let mut rows = [const { Vec::new() }; 6];
    for i in 0..NUM_THRESHOLDS {
        let t = i as f64 / (NUM_THRESHOLDS - 1) as f64;
        // `pr.thresholds` increase; the rule `score >= t` selects the rows of the first
        // distinct score at or above `t`.
        let at = pr.thresholds.partition_point(|&s| s < t);
        let (tp, fp) = if at < pr.thresholds.len() {
            let tp = (pr.recall[at] * n_pos).round();
            let fp = if pr.precision[at] > 0.0 {
                (tp / pr.precision[at] - tp).round()
            } else {
                roc_false_positives(curves, t, n_neg)
            };
            (tp, fp)
        } else {
            (0.0, 0.0)
        };
        let (tn, fn_) = (n_neg - fp, n_pos - tp);
        let values = [
            tp,
            fp,
            tn,
            fn_,
            tp / (tp + fp).max(MINIMUM_COUNT),
            tp / (tp + fn_).max(MINIMUM_COUNT),
        ];
        for (row, v) in rows.iter_mut().zip(values) {
            row.push(v as f32);
        }
    }
    let content = PrCurvePluginData {
        version: 0,
        num_thresholds: NUM_THRESHOLDS as u32,
    }
    .encode_to_vec();
    Some(Value {
        tag: format!("{prefix}pr_curve/{split}/{}", curves.label),
        metadata: Some(SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: "pr_curves".into(),
                content,
            }),
            display_name: format!("{} ({split})", curves.label),
            summary_description: String::new(),
        }),
        value: Some(ValueKind::Tensor(TensorProto {
            dtype: DT_FLOAT,
            tensor_shape: Some(TensorShapeProto {
                dim: vec![
                    Dim { size: 6 },
                    Dim {
                        size: NUM_THRESHOLDS as i64,
                    },
                ],
            }),
            float_val: rows.concat(),
        })),
    })
}

/// False positives at threshold `t` when no true positive is there (precision 0): from the
/// ROC curve's point at the lowest threshold at or above `t` (its thresholds decrease).
fn roc_false_positives(curves: &ClassCurves, t: f64, n_neg: f64) -> f64 {
    let Some(roc) = &curves.roc else {
        return 0.0;
    };
    let at = roc.thresholds.partition_point(|&s| s >= t);
    at.checked_sub(1)
        .map_or(0.0, |i| (roc.fpr[i] * n_neg).round())
}
