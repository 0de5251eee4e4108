//! `GET /api/jobs/{id}/model?format=torchscript|safetensors&version=best|last`: the
//! exported model as a download, the same files as the gRPC `ExportModel` and
//! `gradstream export`. TorchScript is one file (`model.pt`); safetensors is several
//! (`model.safetensors`, `model_card.json`, a TorchScript module's files), sent as one
//! uncompressed tar archive.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::error::ApiError;
use crate::domain::{ModelVersion, SpecError};
use crate::jobs::{ExportFormat, ExportedFile};

pub async fn download(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (format, version) = export_params(&params)?;
    let jobs = state.jobs.clone();
    let job = id.clone();
    let files = tokio::task::spawn_blocking(move || jobs.export(&job, version, format))
        .await
        .map_err(ApiError::task_failed)??;
    let short = id.get(..8).unwrap_or(&id);
    let (name, kind, bytes) = match files.as_slice() {
        [one] => (
            format!("{short}-{}", one.name),
            "application/octet-stream",
            one.bytes.clone(),
        ),
        _ => (
            format!("{short}-safetensors.tar"),
            "application/x-tar",
            tar(&files),
        ),
    };
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

fn export_params(
    params: &HashMap<String, String>,
) -> Result<(ExportFormat, ModelVersion), SpecError> {
    let mut format = None;
    let mut version = ModelVersion::Best;
    for (key, value) in params {
        match key.as_str() {
            "format" => {
                format = Some(match value.as_str() {
                    "torchscript" => ExportFormat::TorchScript,
                    "safetensors" => ExportFormat::Safetensors,
                    _ => {
                        return Err(SpecError::new(
                            "format",
                            format!(
                                "'{value}' is not an export format; use torchscript or safetensors"
                            ),
                        ));
                    }
                })
            }
            "version" => {
                version = match value.as_str() {
                    "best" => ModelVersion::Best,
                    "last" => ModelVersion::Last,
                    _ => {
                        return Err(SpecError::new(
                            "version",
                            format!("'{value}' is not a model version; use best or last"),
                        ));
                    }
                }
            }
            other => {
                return Err(SpecError::new(
                    other,
                    "is not a parameter of GET /api/jobs/{id}/model; use format and version",
                ));
            }
        }
    }
    let format = format.ok_or_else(|| {
        SpecError::new(
            "format",
            "is required; use format=torchscript or format=safetensors",
        )
    })?;
    Ok((format, version))
}

/// An uncompressed POSIX ustar archive of `files` (regular files, mode 0644).
fn tar(files: &[ExportedFile]) -> Vec<u8> {
    const BLOCK: usize = 512;
    let mut out = Vec::new();
    for f in files {
        let mut h = [0u8; BLOCK];
        let name = f.name.as_bytes();
        h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        put_octal(&mut h[100..108], 0o644);
        put_octal(&mut h[108..116], 0);
        put_octal(&mut h[116..124], 0);
        put_octal(&mut h[124..136], f.bytes.len() as u64);
        put_octal(&mut h[136..148], 0);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        // The checksum is computed with its own field as spaces.
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        put_octal(&mut h[148..155], sum);
        out.extend_from_slice(&h);
        out.extend_from_slice(&f.bytes);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

/// `value` in octal, zero-padded, NUL-terminated, filling `field`.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}
