//! `gradstream.v1.Models`: TorchScript modules uploaded for jobs to train. Uploads stream
//! to a temporary file; the module is checked once complete, and nothing is kept unless it
//! loads as a trainable TorchScript module.

use tonic::{Request, Response, Status, Streaming};

use super::blocking;
use super::datasets::{UploadMessage, UploadPart, first_header, receive};
use super::pb;
use super::pb::models_server::{Models, ModelsServer};
use crate::jobs::{JobManager, ModelHeader};

pub fn service(jobs: JobManager) -> ModelsServer<ModelsService> {
    ModelsServer::new(ModelsService { jobs })
}

pub struct ModelsService {
    jobs: JobManager,
}

impl UploadMessage for pb::UploadModelRequest {
    type Header = pb::ModelHeader;
    fn into_part(self) -> UploadPart<Self::Header> {
        use pb::upload_model_request::Part;
        match self.part {
            Some(Part::Header(h)) => UploadPart::Header(h),
            Some(Part::Chunk(bytes)) => UploadPart::Chunk(bytes),
            None => UploadPart::Empty,
        }
    }
}

#[tonic::async_trait]
impl Models for ModelsService {
    async fn upload_model(
        &self,
        req: Request<Streaming<pb::UploadModelRequest>>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        let mut stream = req.into_inner();
        let header = first_header(&mut stream, "name, optional sha256").await?;
        let header = ModelHeader {
            name: header.name,
            sha256: (!header.sha256.is_empty()).then_some(header.sha256),
        };
        let jobs = self.jobs.clone();
        let upload = blocking(move || jobs.begin_model_upload(header)).await?;
        let upload = receive(upload, &mut stream).await?;
        let info = blocking(move || upload.finish()).await?;
        Ok(Response::new(pb::ModelInfo::from(&info)))
    }

    async fn list_models(
        &self,
        _req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let jobs = self.jobs.clone();
        let all = blocking(move || jobs.models()).await?;
        Ok(Response::new(pb::ListModelsResponse {
            models: all.iter().map(pb::ModelInfo::from).collect(),
        }))
    }

    async fn get_model(
        &self,
        req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        let jobs = self.jobs.clone();
        let id = req.into_inner().model_id;
        let info = blocking(move || jobs.model(&id)).await?;
        Ok(Response::new(pb::ModelInfo::from(&info)))
    }

    async fn delete_model(
        &self,
        req: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        let jobs = self.jobs.clone();
        let id = req.into_inner().model_id;
        blocking(move || jobs.delete_model(&id)).await?;
        Ok(Response::new(pb::DeleteModelResponse {}))
    }
}
