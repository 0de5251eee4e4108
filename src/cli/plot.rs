//! `evaluate --plot DIR`: the ROC and precision-recall curves of every class as SVG charts.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::transport::pb;

/// Writes `roc.svg` and `pr.svg` into `dir` (created if missing); returns their paths.
pub fn curves(dir: &Path, e: &pb::Evaluation) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    let curves = e
        .metrics
        .as_ref()
        .map(|m| m.curves.as_slice())
        .unwrap_or_default();
    let roc: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .filter_map(|c| {
            let r = c.roc.as_ref()?;
            Some((
                c.label.clone(),
                r.fpr.iter().copied().zip(r.tpr.iter().copied()).collect(),
            ))
        })
        .collect();
    let pr: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .filter_map(|c| {
            let p = c.pr.as_ref()?;
            Some((
                format!("{} (AP {:.3})", c.label, p.average_precision),
                p.recall
                    .iter()
                    .copied()
                    .zip(p.precision.iter().copied())
                    .collect(),
            ))
        })
        .collect();
    let roc_path = dir.join("roc.svg");
    let pr_path = dir.join("pr.svg");
    chart(
        &roc_path,
        "ROC curves (one vs rest)",
        "false positive rate",
        "true positive rate",
        &roc,
        true,
    )?;
    chart(
        &pr_path,
        "Precision-recall curves (one vs rest)",
        "recall",
        "precision",
        &pr,
        false,
    )?;
    Ok(vec![roc_path, pr_path])
}

fn chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    diagonal: bool,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    let root = SVGBackend::new(path, (720, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| err(&e))?;
    if diagonal {
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
            .map_err(|e| err(&e))?;
    }
    for (i, (label, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
