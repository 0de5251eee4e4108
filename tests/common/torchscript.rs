//! TorchScript modules for the tests: made by `tests/reference/make_torchscript.py` in
//! `.venv`, uploaded through the Models service, named in specs.

use std::path::Path;

use gradstream::transport::pb::{self, models_client::ModelsClient};
use serde_json::Value;
use tonic::transport::Channel;

use super::run_reference;

/// The modules of `tests/reference/make_torchscript.py`, written into a temporary folder.
pub fn torchscript_modules() -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    run_reference("make_torchscript.py", &[dir.path()]);
    let info =
        serde_json::from_slice(&std::fs::read(dir.path().join("modules.json")).unwrap()).unwrap();
    (dir, info)
}

pub async fn models_client(url: String) -> ModelsClient<Channel> {
    ModelsClient::connect(url).await.unwrap()
}

/// Uploads `path` in chunks of 1000 bytes, announcing its sha256 (or `sha256` if given).
pub async fn upload_model(
    m: &mut ModelsClient<Channel>,
    path: &Path,
    sha256: Option<&str>,
) -> Result<pb::ModelInfo, tonic::Status> {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    let sha = sha256.map_or_else(
        || format!("{:x}", sha2::Sha256::digest(&bytes)),
        str::to_string,
    );
    let mut msgs = vec![pb::UploadModelRequest {
        part: Some(pb::upload_model_request::Part::Header(pb::ModelHeader {
            name: path.file_name().unwrap().to_string_lossy().into(),
            sha256: sha,
        })),
    }];
    msgs.extend(bytes.chunks(1000).map(|c| pb::UploadModelRequest {
        part: Some(pb::upload_model_request::Part::Chunk(c.to_vec())),
    }));
    m.upload_model(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

pub fn torchscript(model_id: &str, input_shape: Vec<u32>) -> Option<pb::Model> {
    Some(pb::Model {
        kind: Some(pb::model::Kind::Torchscript(pb::TorchScriptModel {
            model_id: model_id.into(),
            input_shape,
        })),
    })
}
