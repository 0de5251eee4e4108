//! Client commands on trained models: `predict`, `evaluate`, `export`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use super::client::{connect, status_error};
use super::{ClientArgs, render};
use crate::transport::pb;

type Result<T> = std::result::Result<T, String>;

/// Rows per Predict request.
const PREDICT_BATCH: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VersionArg {
    /// The best epoch's model (by the job's best_model_metric).
    Best,
    /// The last finished epoch's model.
    Last,
}

impl VersionArg {
    fn pb(self) -> i32 {
        match self {
            Self::Best => pb::ModelVersion::Best as i32,
            Self::Last => pb::ModelVersion::Last as i32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Torchscript,
    Safetensors,
}

/// What `evaluate`'s threshold report is about.
pub struct ThresholdArgs {
    pub target_recall: Option<f64>,
    pub positive_label: Option<String>,
}

/// Where `evaluate` takes its labelled data from.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct EvalSource {
    /// An uploaded dataset's id.
    #[arg(long)]
    pub dataset: Option<String>,
    /// A CSV file in the server's data directory.
    #[arg(long)]
    pub csv: Option<String>,
    /// A local CSV file, sent with the request.
    #[arg(long)]
    pub file: Option<PathBuf>,
}

async fn job(args: &ClientArgs, job_id: &str) -> Result<pb::Job> {
    Ok(connect(args)
        .await?
        .get_job(pb::GetJobRequest {
            job_id: job_id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner())
}

/// Reads the model's feature columns from a local CSV: by name when the header has them
/// all (other columns, such as the label, are ignored), else by position when the file has
/// exactly one column per feature.
fn read_features(file: &Path, features: &[String]) -> Result<Vec<Vec<f32>>> {
    let shown = file.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(file)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let header = reader
        .headers()
        .map_err(|e| format!("{shown}: {e}"))?
        .clone();
    let by_name: Option<Vec<usize>> = features
        .iter()
        .map(|f| header.iter().position(|h| h == f))
        .collect();
    let columns = match by_name {
        Some(c) => c,
        None if header.len() == features.len() => (0..features.len()).collect(),
        None => {
            return Err(format!(
                "{shown}:1:1: the header ({}) lacks the model's feature columns ({}); name them in the header, or give exactly {} columns in the model's order",
                header.iter().collect::<Vec<_>>().join(", "),
                features.join(", "),
                features.len()
            ));
        }
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("{shown}: {e}"))?;
        let line = record.position().map_or(0, |p| p.line());
        let row = columns
            .iter()
            .map(|&c| {
                let field = record.get(c).unwrap_or("");
                field.parse::<f32>().map_err(|_| {
                    format!(
                        "{shown}:{line}:{}: '{field}' in column '{}' is not a number",
                        c + 1,
                        &header[c]
                    )
                })
            })
            .collect::<Result<Vec<f32>>>()?;
        rows.push(row);
    }
    Ok(rows)
}

pub async fn predict(
    args: &ClientArgs,
    job_id: &str,
    file: &Path,
    version: VersionArg,
) -> Result<ExitCode> {
    let job = job(args, job_id).await?;
    let rows = read_features(file, &job.feature_names)?;
    let mut c = connect(args).await?;
    if !args.json {
        let probs: Vec<String> = job.labels.iter().map(|l| format!("p_{l}")).collect();
        println!("row,label,class_index,{}", probs.join(","));
    }
    let mut row = 0usize;
    for batch in rows.chunks(PREDICT_BATCH) {
        let resp = c
            .predict(pb::PredictRequest {
                job_id: job_id.to_string(),
                rows: batch
                    .iter()
                    .map(|r| pb::FeatureRow { values: r.clone() })
                    .collect(),
                model: version.pb(),
            })
            .await
            .map_err(|e| {
                format!(
                    "{} (rows {}..{} of {})",
                    status_error(e),
                    row,
                    row + batch.len(),
                    file.display()
                )
            })?
            .into_inner();
        for p in resp.predictions {
            if args.json {
                println!(
                    "{}",
                    json!({"row": row, "label": p.label, "class_index": p.class_index,
                           "probabilities": p.probabilities, "epoch": resp.epoch})
                );
            } else {
                let probs: Vec<String> = p.probabilities.iter().map(|v| v.to_string()).collect();
                println!("{row},{},{},{}", p.label, p.class_index, probs.join(","));
            }
            row += 1;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn evaluate(
    args: &ClientArgs,
    job_id: &str,
    source: EvalSource,
    label_column: Option<String>,
    report: ThresholdArgs,
    version: VersionArg,
    plot: Option<PathBuf>,
) -> Result<ExitCode> {
    use pb::evaluate_request::Data;
    let data = match (source.dataset, source.csv, source.file) {
        (Some(id), _, _) => Data::DatasetId(id),
        (_, Some(path), _) => Data::Csv(pb::CsvDataset {
            path,
            label_column: label_column.unwrap_or_default(),
        }),
        (_, _, Some(file)) => {
            let ds =
                crate::data::load_csv(&file, &file.display().to_string(), label_column.as_deref())
                    .map_err(|e| e.to_string())?;
            Data::Rows(pb::LabeledRows {
                rows: (0..ds.rows())
                    .map(|i| pb::LabeledRow {
                        values: ds.row(i).to_vec(),
                        label: ds.labels[ds.targets[i]].clone(),
                    })
                    .collect(),
            })
        }
        _ => return Err("give --dataset, --csv or --file".into()),
    };
    let e = connect(args)
        .await?
        .evaluate(pb::EvaluateRequest {
            job_id: job_id.to_string(),
            data: Some(data),
            model: version.pb(),
            target_recall: report.target_recall,
            positive_label: report.positive_label.unwrap_or_default(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if args.json {
        println!("{}", render::evaluation_json(&e));
    } else {
        render::print_evaluation(&e);
    }
    if let Some(dir) = plot {
        let written = super::plot::curves(&dir, &e).map_err(|err| format!("--plot: {err}"))?;
        if !args.json {
            for f in written {
                println!("wrote {}", f.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export(
    args: &ClientArgs,
    job_id: &str,
    format: FormatArg,
    output: &Path,
    version: VersionArg,
) -> Result<ExitCode> {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let format = match format {
        FormatArg::Torchscript => pb::ExportFormat::Torchscript,
        FormatArg::Safetensors => pb::ExportFormat::Safetensors,
    };
    let mut stream = connect(args)
        .await?
        .export_model(pb::ExportModelRequest {
            job_id: job_id.to_string(),
            format: format as i32,
            model: version.pb(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    // The first file goes to `output`; the others next to it, under their own names.
    let dir = output.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut current: Option<(pb::ExportedFile, PathBuf, std::fs::File, Sha256, u64)> = None;
    let mut written = Vec::new();
    let finish = |cur: Option<(pb::ExportedFile, PathBuf, std::fs::File, Sha256, u64)>,
                  written: &mut Vec<(PathBuf, pb::ExportedFile)>|
     -> Result<()> {
        if let Some((f, path, file, hash, size)) = cur {
            file.sync_all()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let got = format!("{:x}", hash.finalize());
            if size != f.size || got != f.sha256 {
                return Err(format!(
                    "{}: received {size} bytes with sha256 {got}, the server sent {} bytes with sha256 {}; run the export again",
                    path.display(),
                    f.size,
                    f.sha256
                ));
            }
            written.push((path, f));
        }
        Ok(())
    };
    while let Some(chunk) = stream.message().await.map_err(status_error)? {
        match chunk.part {
            Some(pb::export_chunk::Part::File(f)) => {
                finish(current.take(), &mut written)?;
                let path = if written.is_empty() {
                    output.to_path_buf()
                } else {
                    dir.join(&f.name)
                };
                let file = std::fs::File::create(&path)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                current = Some((f, path, file, Sha256::new(), 0));
            }
            Some(pb::export_chunk::Part::Data(bytes)) => {
                let Some((_, path, file, hash, size)) = current.as_mut() else {
                    return Err("the server sent data before a file header".into());
                };
                file.write_all(&bytes)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                hash.update(&bytes);
                *size += bytes.len() as u64;
            }
            None => {}
        }
    }
    finish(current.take(), &mut written)?;
    for (path, f) in &written {
        if args.json {
            println!(
                "{}",
                json!({"path": path, "name": f.name, "size": f.size, "sha256": f.sha256})
            );
        } else {
            println!(
                "wrote {} ({} bytes, sha256 {})",
                path.display(),
                f.size,
                f.sha256
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn lr_find(args: &ClientArgs, req: pb::FindLearningRateRequest) -> Result<ExitCode> {
    use pb::lr_finder_event::Kind;
    let mut stream = connect(args)
        .await?
        .find_learning_rate(req)
        .await
        .map_err(status_error)?
        .into_inner();
    let mut points = Vec::new();
    let mut result = None;
    while let Some(e) = stream.message().await.map_err(status_error)? {
        match e.kind {
            Some(Kind::Point(p)) => {
                if args.json {
                    println!(
                        "{}",
                        json!({"iteration": p.iteration, "learning_rate": p.learning_rate,
                               "loss": p.loss, "smoothed_loss": p.smoothed_loss})
                    );
                }
                points.push(p);
            }
            Some(Kind::Result(r)) => result = Some(r),
            None => {}
        }
    }
    let r = result.ok_or("the server ended the range test without a result")?;
    if args.json {
        println!(
            "{}",
            json!({"suggested_learning_rate": r.suggested_learning_rate,
                   "min_loss_learning_rate": r.min_loss_learning_rate,
                   "diverged": r.diverged, "iterations": r.iterations})
        );
    } else {
        print!("{}", render::lr_curve(&points, r.suggested_learning_rate));
        println!(
            "suggested learning rate: {:.2e} (steepest fall of the loss); lowest loss at {:.2e}{}",
            r.suggested_learning_rate,
            r.min_loss_learning_rate,
            if r.diverged {
                "; the loss diverged after it"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
