//! Printing for humans (progress bars, tables) and for scripts (`--json`, one object a line).

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::transport::pb;

pub struct Renderer {
    json: bool,
    bar: Option<((Option<u32>, u32), ProgressBar)>,
}

fn status_name(v: i32) -> &'static str {
    pb::JobStatus::try_from(v)
        .map(|s| s.as_str_name().trim_start_matches("JOB_STATUS_"))
        .unwrap_or("UNKNOWN")
}

fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref().map_or(Value::Null, |t| json!(t.to_string()))
}

impl Renderer {
    pub fn new(json: bool) -> Self {
        Self { json, bar: None }
    }

    pub fn event(&mut self, ev: &pb::JobEvent) {
        if self.json {
            println!("{}", event_json(ev));
            return;
        }
        use pb::job_event::Kind;
        match &ev.kind {
            Some(Kind::Status(s)) => {
                self.finish();
                println!(
                    "[{}] {} {}",
                    short(&ev.job_id),
                    status_name(s.status),
                    s.message
                );
            }
            Some(Kind::Iteration(p)) => {
                let bar = self.bar_for((p.member, p.epoch), p.iterations_per_epoch);
                bar.set_position(u64::from(p.iteration));
                bar.set_message(format!(
                    "loss {:.4}  {:.0} samples/s",
                    p.loss, p.samples_per_second
                ));
            }
            // Metrics of epoch N may arrive while epoch N+1 is training: print them above
            // the live bar.
            Some(Kind::Epoch(e)) => match &self.bar {
                Some((_, bar)) => bar.suspend(|| print_epoch(e)),
                None => print_epoch(e),
            },
            Some(Kind::RangePoint(p)) => println!(
                "  {:>5}  lr {:<12.4e} loss {:.4}  smoothed {:.4}",
                p.iteration, p.learning_rate, p.loss, p.smoothed_loss
            ),
            Some(Kind::RangeResult(r)) => println!(
                "suggested learning rate: {:e} (lowest loss at {:e}{})",
                r.suggested_learning_rate,
                r.min_loss_learning_rate,
                if r.diverged {
                    "; the loss diverged"
                } else {
                    ""
                }
            ),
            None => {}
        }
    }

    fn bar_for(&mut self, epoch: (Option<u32>, u32), len: u32) -> &ProgressBar {
        if self.bar.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.finish();
            let bar = ProgressBar::new(u64::from(len));
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(match epoch {
                (Some(m), e) => format!("{e} (member {m})"),
                (None, e) => e.to_string(),
            });
            self.bar = Some((epoch, bar));
        }
        &self.bar.as_ref().expect("bar was just set").1
    }

    pub fn finish(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            bar.finish();
        }
    }

    pub fn model(&self, m: &pb::ModelInfo) {
        if self.json {
            let parameters: Vec<_> = m
                .parameters
                .iter()
                .map(
                    |p| json!({"name": p.name, "shape": p.shape, "requires_grad": p.requires_grad}),
                )
                .collect();
            println!(
                "{}",
                json!({
                    "id": m.id, "name": m.name, "bytes": m.bytes, "sha256": m.sha256,
                    "created": ts(&m.created), "parameter_count": m.parameter_count,
                    "parameters": parameters,
                })
            );
            return;
        }
        let params: Vec<String> = m
            .parameters
            .iter()
            .map(|p| {
                let dims: Vec<String> = p.shape.iter().map(i64::to_string).collect();
                let frozen = if p.requires_grad { "" } else { " (frozen)" };
                format!("{}[{}]{frozen}", p.name, dims.join("x"))
            })
            .collect();
        println!(
            "{}\t{}\t{} parameters\t{} bytes\tsha256 {}\t{}",
            m.id,
            m.name,
            m.parameter_count,
            m.bytes,
            m.sha256,
            params.join(" ")
        );
    }

    pub fn dataset(&self, d: &pb::DatasetInfo) {
        if self.json {
            println!(
                "{}",
                json!({
                    "id": d.id, "name": d.name, "rows": d.rows, "features": d.features,
                    "classes": d.classes, "labels": d.labels, "class_counts": d.class_counts,
                    "bytes": d.bytes, "sha256": d.sha256, "created": ts(&d.created),
                    "label_column": d.label_column,
                })
            );
            return;
        }
        let classes: Vec<String> = d
            .labels
            .iter()
            .zip(&d.class_counts)
            .map(|(l, c)| format!("{l}:{c}"))
            .collect();
        println!(
            "{}\t{}\t{} rows\t{} features\tlabel '{}'\tclasses {}\t{} bytes\tsha256 {}",
            d.id,
            d.name,
            d.rows,
            d.features,
            d.label_column,
            classes.join(" "),
            d.bytes,
            d.sha256
        );
    }

    pub fn job_line(&self, job: &pb::Job) {
        if self.json {
            println!("{}", job_json(job));
        } else {
            println!("{}\t{}\t{}", job.id, status_name(job.status), job.message);
        }
    }

    pub fn job_table(&self, jobs: &[pb::Job]) {
        if self.json {
            for j in jobs {
                println!("{}", job_json(j));
            }
            return;
        }
        println!(
            "{:<36}  {:<9}  {:>6}  {:<20}  MESSAGE",
            "ID", "STATUS", "EPOCHS", "NAME"
        );
        for j in jobs {
            let total = total_epochs(j);
            println!(
                "{:<36}  {:<9}  {:>6}  {:<20}  {}",
                j.id,
                status_name(j.status),
                format!("{}/{}", j.epochs_completed, total),
                j.spec.as_ref().map_or("", |s| s.name.as_str()),
                j.message
            );
        }
    }

    pub fn job_detail(&self, job: &pb::Job) {
        if self.json {
            println!("{}", job_json(job));
            return;
        }
        println!("id:          {}", job.id);
        println!("status:      {} {}", status_name(job.status), job.message);
        println!(
            "epochs:      {}/{}",
            job.epochs_completed,
            total_epochs(job)
        );
        if !job.class_weights.is_empty() {
            println!("weights:     {:?}", job.class_weights);
        }
        if job.train_class_counts != job.resampled_class_counts {
            println!(
                "rows/class:  {:?} -> {:?} (resampled)",
                job.train_class_counts, job.resampled_class_counts
            );
        }
        println!("parameters:  {}", job.parameter_count);
        println!("classes:     {}", job.labels.join(", "));
        println!(
            "samples:     {} train, {} validation",
            job.train_samples, job.validation_samples
        );
        println!("device:      {}", job.device);
        if let Some(e) = &job.last_epoch {
            print_epoch(e);
        }
    }
}

/// A byte-count progress bar (hidden for --json).
pub fn byte_bar(total: u64, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("upload [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// Epochs a job trains in all: for an ensemble, every member's.
fn total_epochs(j: &pb::Job) -> u32 {
    j.spec.as_ref().map_or(0, |s| {
        s.epochs * s.ensemble.as_ref().map_or(1, |e| e.members.max(1))
    })
}

fn print_epoch(e: &pb::EpochEnd) {
    match (e.member, e.ensemble) {
        (Some(m), _) => print!("member {m} "),
        (None, true) => print!("ensemble "),
        _ => {}
    }
    let summary = |m: &pb::Metrics| {
        format!(
            "loss {:.4}  acc {:.4}  macro-F1 {:.4}{}",
            m.loss,
            m.accuracy,
            m.r#macro.map_or(0.0, |a| a.f1),
            m.roc_auc.map_or(String::new(), |a| format!("  AUC {a:.4}"))
        )
    };
    let train = e.train.as_ref().map(summary).unwrap_or_default();
    match &e.validation {
        Some(v) => println!(
            "epoch {:>3}  train: {train}  |  validation: {}  ({:.2}s)",
            e.epoch,
            summary(v),
            e.seconds
        ),
        None => println!("epoch {:>3}  train: {train}  ({:.2}s)", e.epoch, e.seconds),
    }
    if let Some(m) = e.validation.as_ref().or(e.train.as_ref()) {
        let which = if e.validation.is_some() {
            "validation"
        } else {
            "train"
        };
        print_confusion(which, m);
        print_classes(m);
    }
}

fn print_confusion(which: &str, m: &pb::Metrics) {
    let Some(cm) = &m.confusion_matrix else {
        return;
    };
    let n = cm.labels.len();
    let w = cm
        .labels
        .iter()
        .map(|l| l.len())
        .chain(cm.counts.iter().map(|c| c.to_string().len()))
        .max()
        .unwrap_or(1)
        .max(4);
    println!("  {which} confusion matrix (rows: actual, columns: predicted)");
    print!("  {:>w$} ", "");
    for l in &cm.labels {
        print!(" {l:>w$}");
    }
    println!();
    for (a, label) in cm.labels.iter().enumerate() {
        print!("  {label:>w$} ");
        for p in 0..n {
            print!(" {:>w$}", cm.counts.get(a * n + p).copied().unwrap_or(0));
        }
        println!();
    }
}

fn print_classes(m: &pb::Metrics) {
    let w = m
        .per_class
        .iter()
        .map(|c| c.label.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "  {:>w$}  {:>9}  {:>6}  {:>6}  {:>7}  {:>6}",
        "class", "precision", "recall", "f1", "support", "auc"
    );
    for c in &m.per_class {
        println!(
            "  {:>w$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}  {:>6}",
            c.label,
            c.precision,
            c.recall,
            c.f1,
            c.support,
            c.roc_auc.map_or("-".into(), |a| format!("{a:.4}"))
        );
    }
}

fn averages_json(a: &Option<pb::Averages>) -> Value {
    a.as_ref().map_or(
        Value::Null,
        |a| json!({"precision": a.precision, "recall": a.recall, "f1": a.f1}),
    )
}

fn metrics_json(m: &Option<pb::Metrics>) -> Value {
    let Some(m) = m else { return Value::Null };
    json!({
        "loss": m.loss,
        "accuracy": m.accuracy,
        "confusion_matrix": m.confusion_matrix.as_ref().map(|c| json!({"labels": c.labels, "counts": c.counts})),
        "per_class": m.per_class.iter().map(|c| json!({
            "label": c.label, "precision": c.precision, "recall": c.recall, "f1": c.f1,
            "support": c.support, "roc_auc": c.roc_auc,
        })).collect::<Vec<_>>(),
        "macro": averages_json(&m.r#macro),
        "weighted": averages_json(&m.weighted),
        "roc_auc": m.roc_auc,
        "average_precision": m.average_precision,
    })
}

fn epoch_json(e: &pb::EpochEnd) -> Value {
    json!({"epoch": e.epoch, "member": e.member, "ensemble": e.ensemble, "best_epoch": e.best_epoch,
        "train": metrics_json(&e.train), "validation": metrics_json(&e.validation), "seconds": e.seconds})
}

pub fn event_json(ev: &pb::JobEvent) -> Value {
    use pb::job_event::Kind;
    let mut v = json!({"job_id": ev.job_id, "seq": ev.seq, "time": ts(&ev.time)});
    let (key, body) = match &ev.kind {
        Some(Kind::Status(s)) => (
            "status",
            json!({"status": status_name(s.status), "message": s.message}),
        ),
        Some(Kind::Iteration(p)) => (
            "iteration",
            json!({
                "epoch": p.epoch, "iteration": p.iteration, "iterations_per_epoch": p.iterations_per_epoch,
                "global_step": p.global_step, "loss": p.loss, "learning_rate": p.learning_rate,
                "samples_per_second": p.samples_per_second, "member": p.member,
            }),
        ),
        Some(Kind::Epoch(e)) => ("epoch", epoch_json(e)),
        Some(Kind::RangePoint(p)) => (
            "range_point",
            json!({"iteration": p.iteration, "learning_rate": p.learning_rate, "loss": p.loss,
                "smoothed_loss": p.smoothed_loss}),
        ),
        Some(Kind::RangeResult(r)) => (
            "range_result",
            json!({"suggested_learning_rate": r.suggested_learning_rate,
                "min_loss_learning_rate": r.min_loss_learning_rate, "diverged": r.diverged,
                "iterations": r.iterations}),
        ),
        None => return v,
    };
    v[key] = body;
    v
}

fn job_json(j: &pb::Job) -> Value {
    json!({
        "id": j.id,
        "kind": match pb::JobKind::try_from(j.kind) {
            Ok(pb::JobKind::RangeTest) => "range_test",
            _ => "training",
        },
        "name": j.spec.as_ref().map(|s| s.name.clone()),
        "status": status_name(j.status),
        "message": j.message,
        "created": ts(&j.created),
        "started": ts(&j.started),
        "finished": ts(&j.finished),
        "epochs": total_epochs(j),
        "epochs_completed": j.epochs_completed,
        "parameter_count": j.parameter_count,
        "labels": j.labels,
        "train_samples": j.train_samples,
        "validation_samples": j.validation_samples,
        "device": j.device,
        "last_epoch": j.last_epoch.as_ref().map(epoch_json),
    })
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

fn threshold_json(p: &Option<pb::ThresholdPoint>) -> Value {
    p.as_ref().map_or(Value::Null, |p| {
        json!({
            "threshold": p.threshold, "precision": p.precision, "recall": p.recall, "f1": p.f1,
            "confusion_matrix": p.confusion_matrix.as_ref().map(|c| json!({"labels": c.labels, "counts": c.counts})),
        })
    })
}

/// An Evaluate answer as one JSON object, curves included.
pub fn evaluation_json(e: &pb::Evaluation) -> Value {
    let curves: Vec<Value> = e
        .metrics
        .as_ref()
        .map(|m| m.curves.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({
                "label": c.label,
                "roc": c.roc.as_ref().map(|r| json!({"fpr": r.fpr, "tpr": r.tpr, "thresholds": r.thresholds})),
                "pr": c.pr.as_ref().map(|p| json!({"precision": p.precision, "recall": p.recall,
                    "thresholds": p.thresholds, "average_precision": p.average_precision})),
            })
        })
        .collect();
    json!({
        "epoch": e.epoch,
        "rows": e.rows,
        "metrics": metrics_json(&e.metrics),
        "balanced_accuracy": e.balanced_accuracy,
        "matthews_corrcoef": e.matthews_corrcoef,
        "log_loss": e.log_loss,
        "brier_score": e.brier_score,
        "threshold_report": e.threshold_report.as_ref().map(|t| json!({
            "positive_label": t.positive_label,
            "best_f1": threshold_json(&t.best_f1),
            "target_recall": threshold_json(&t.target_recall),
        })),
        "curves": curves,
    })
}

/// An Evaluate answer for a person: the headline numbers, the confusion matrix, the
/// per-class table and the threshold report.
pub fn print_evaluation(e: &pb::Evaluation) {
    let Some(m) = &e.metrics else { return };
    println!(
        "evaluated {} rows with the model of epoch {}",
        e.rows, e.epoch
    );
    println!(
        "  accuracy {:.4}  balanced accuracy {}  macro-F1 {:.4}  MCC {}",
        m.accuracy,
        opt(e.balanced_accuracy),
        m.r#macro.map_or(0.0, |a| a.f1),
        opt(e.matthews_corrcoef)
    );
    println!(
        "  ROC AUC {}  average precision {}  log loss {}  Brier {}  loss {:.4}",
        opt(m.roc_auc),
        opt(m.average_precision),
        opt(e.log_loss),
        opt(e.brier_score),
        m.loss
    );
    print_confusion("evaluation", m);
    print_classes(m);
    if let Some(t) = &e.threshold_report {
        println!("  thresholds on p({}):", t.positive_label);
        let line = |name: &str, p: &Option<pb::ThresholdPoint>| {
            if let Some(p) = p {
                let c = p
                    .confusion_matrix
                    .as_ref()
                    .map(|c| c.counts.clone())
                    .unwrap_or_default();
                println!(
                    "    {name:<14} threshold {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  [tn fp fn tp] = {:?}",
                    p.threshold, p.precision, p.recall, p.f1, c
                );
            }
        };
        line("best F1", &t.best_f1);
        line("target recall", &t.target_recall);
    }
}

/// The range test's smoothed loss against log10(learning rate), as text: one column per
/// bucket of learning rates, `*` for the curve and `|` at the suggested rate.
pub fn lr_curve(points: &[pb::LrPoint], suggested: f64) -> String {
    const W: usize = 64;
    const H: usize = 16;
    if points.is_empty() {
        return String::new();
    }
    let x = |lr: f64| lr.log10();
    let (x0, x1) = (
        x(points[0].learning_rate),
        x(points[points.len() - 1].learning_rate),
    );
    let losses: Vec<f64> = points.iter().map(|p| p.smoothed_loss).collect();
    let lo = losses.iter().copied().fold(f64::INFINITY, f64::min);
    // Clip the divergence at the end so the interesting part keeps its resolution.
    let hi = losses
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .min(lo + 3.0 * (losses[0] - lo).max(1e-9));
    let col = |lr: f64| (((x(lr) - x0) / (x1 - x0).max(1e-12)) * (W - 1) as f64).round() as usize;
    let row = |l: f64| {
        let f = ((l.min(hi) - lo) / (hi - lo).max(1e-12)).clamp(0.0, 1.0);
        ((1.0 - f) * (H - 1) as f64).round() as usize
    };
    let mut grid = vec![vec![' '; W]; H];
    let s = col(suggested).min(W - 1);
    for line in grid.iter_mut() {
        line[s] = '|';
    }
    for p in points {
        grid[row(p.smoothed_loss)][col(p.learning_rate).min(W - 1)] = '*';
    }
    let mut out = String::new();
    for (i, line) in grid.iter().enumerate() {
        let label = match i {
            0 => format!("{hi:>9.4}"),
            i if i == H - 1 => format!("{lo:>9.4}"),
            _ => " ".repeat(9),
        };
        out.push_str(&format!("{label} {}\n", line.iter().collect::<String>()));
    }
    out.push_str(&format!(
        "{:>9} {:<w$}{:.0e}\n",
        "loss/lr",
        format!("{:.0e}", points[0].learning_rate),
        points[points.len() - 1].learning_rate,
        w = W - 5
    ));
    out
}
