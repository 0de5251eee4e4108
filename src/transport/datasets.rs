//! `gradstream.v1.Datasets`: uploads stream through the validator chunk by chunk; nothing
//! is kept unless the whole upload is valid.

use tonic::{Request, Response, Status, Streaming};

use super::pb::datasets_server::{Datasets, DatasetsServer};
use super::{blocking, pb, status};
use crate::domain::SpecError;
use crate::jobs::{JobManager, Upload, UploadHeader};

pub fn service(jobs: JobManager) -> DatasetsServer<DatasetsService> {
    DatasetsServer::new(DatasetsService { jobs })
}

pub struct DatasetsService {
    jobs: JobManager,
}

/// One message of an upload stream: the header (first message only) or the file's next
/// bytes.
pub(super) enum UploadPart<H> {
    Header(H),
    Chunk(Vec<u8>),
    Empty,
}

/// The request message of an upload RPC.
pub(super) trait UploadMessage {
    type Header;
    fn into_part(self) -> UploadPart<Self::Header>;
}

impl UploadMessage for pb::UploadDatasetRequest {
    type Header = pb::DatasetHeader;
    fn into_part(self) -> UploadPart<Self::Header> {
        use pb::upload_dataset_request::Part;
        match self.part {
            Some(Part::Header(h)) => UploadPart::Header(h),
            Some(Part::Chunk(bytes)) => UploadPart::Chunk(bytes),
            None => UploadPart::Empty,
        }
    }
}

/// The header an upload stream must start with; `fields` names what it holds, for the
/// error.
pub(super) async fn first_header<M: UploadMessage>(
    stream: &mut Streaming<M>,
    fields: &str,
) -> Result<M::Header, Status> {
    match stream.message().await?.map(M::into_part) {
        Some(UploadPart::Header(h)) => Ok(h),
        _ => Err(status::from_spec_error(SpecError::new(
            "header",
            format!("the first message of an upload must carry the header ({fields})"),
        ))),
    }
}

/// Feeds the chunks of an upload stream (after its header) to `upload`, each on a blocking
/// thread. A client that goes away mid-upload ends the stream with an error: `upload` is
/// dropped, and with it the partial file.
pub(super) async fn receive<U: Upload + Send + 'static, M: UploadMessage>(
    mut upload: U,
    stream: &mut Streaming<M>,
) -> Result<U, Status> {
    while let Some(msg) = stream.message().await? {
        match msg.into_part() {
            UploadPart::Chunk(bytes) => {
                upload = blocking(move || upload.push(&bytes).map(|()| upload)).await?;
            }
            UploadPart::Header(_) => {
                return Err(status::from_spec_error(SpecError::new(
                    "header",
                    "only the first message may carry a header; send the file's bytes as chunks",
                )));
            }
            UploadPart::Empty => {}
        }
    }
    Ok(upload)
}

#[tonic::async_trait]
impl Datasets for DatasetsService {
    async fn upload_dataset(
        &self,
        req: Request<Streaming<pb::UploadDatasetRequest>>,
    ) -> Result<Response<pb::DatasetInfo>, Status> {
        let mut stream = req.into_inner();
        let header = first_header(&mut stream, "name, format, label_column").await?;
        if !matches!(
            pb::DatasetFormat::try_from(header.format),
            Ok(pb::DatasetFormat::Unspecified | pb::DatasetFormat::Csv)
        ) {
            return Err(status::from_spec_error(SpecError::new(
                "header.format",
                format!("{} is not a supported format; use CSV", header.format),
            )));
        }
        let header = UploadHeader {
            name: header.name,
            label_column: (!header.label_column.is_empty()).then_some(header.label_column),
            sha256: (!header.sha256.is_empty()).then_some(header.sha256),
        };
        let jobs = self.jobs.clone();
        let upload = blocking(move || jobs.begin_upload(header)).await?;
        let upload = receive(upload, &mut stream).await?;
        let info = blocking(move || upload.finish()).await?;
        Ok(Response::new(pb::DatasetInfo::from(&info)))
    }

    async fn list_datasets(
        &self,
        _req: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let jobs = self.jobs.clone();
        let all = blocking(move || jobs.datasets()).await?;
        Ok(Response::new(pb::ListDatasetsResponse {
            datasets: all.iter().map(pb::DatasetInfo::from).collect(),
        }))
    }

    async fn get_dataset(
        &self,
        req: Request<pb::GetDatasetRequest>,
    ) -> Result<Response<pb::DatasetInfo>, Status> {
        let jobs = self.jobs.clone();
        let id = req.into_inner().dataset_id;
        let info = blocking(move || jobs.dataset(&id)).await?;
        Ok(Response::new(pb::DatasetInfo::from(&info)))
    }

    async fn delete_dataset(
        &self,
        req: Request<pb::DeleteDatasetRequest>,
    ) -> Result<Response<pb::DeleteDatasetResponse>, Status> {
        let jobs = self.jobs.clone();
        let id = req.into_inner().dataset_id;
        blocking(move || jobs.delete_dataset(&id)).await?;
        Ok(Response::new(pb::DeleteDatasetResponse {}))
    }
}
