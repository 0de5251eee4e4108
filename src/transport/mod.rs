//! The only module that knows tonic and prost: the gRPC services, the conversions to and
//! from domain types, and the error→status mapping.

pub(crate) mod convert;
mod datasets;
mod modules;
pub(crate) mod status;
mod trainer;
mod watch;

use std::future::Future;

use tokio::net::TcpListener;

use crate::jobs::JobManager;
use crate::observability::rpc::RpcLayer;

/// Generated protobuf and gRPC code for `gradstream.v1`. Clients use `pb::trainer_client`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("gradstream.v1");

    /// Encoded descriptors of our protos, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("gradstream_descriptor");
}

/// Name of the Trainer service, as the health service reports it.
pub const TRAINER_SERVICE: &str = "gradstream.v1.Trainer";
/// Name of the Datasets service, as the health service reports it.
pub const DATASETS_SERVICE: &str = "gradstream.v1.Datasets";
/// Name of the Models service, as the health service reports it.
pub const MODELS_SERVICE: &str = "gradstream.v1.Models";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service could not be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves the Trainer, Datasets, Models, health and reflection services on `listener` until `shutdown`
/// completes. Health reports SERVING while up; the caller's shutdown future should flip it
/// through the returned reporter before draining jobs.
pub async fn serve(
    listener: TcpListener,
    jobs: JobManager,
    health: tonic_health::server::HealthReporter,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    for name in [TRAINER_SERVICE, DATASETS_SERVICE, MODELS_SERVICE, ""] {
        health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    tonic::transport::Server::builder()
        // Every RPC: its trace span and its gradstream_grpc_requests metrics.
        .layer(RpcLayer::new(jobs.metrics().clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(trainer::service(jobs.clone()))
        .add_service(datasets::service(jobs.clone()))
        .add_service(modules::service(jobs))
        .serve_with_incoming_shutdown(
            // TCP_NODELAY: without it, Nagle's algorithm holds a small frame written right
            // after a large one until the client's delayed ACK (~40 ms on Linux).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}

/// Marks every service NOT_SERVING (first step of a graceful shutdown).
pub async fn set_not_serving(health: &tonic_health::server::HealthReporter) {
    for name in [TRAINER_SERVICE, DATASETS_SERVICE, MODELS_SERVICE, ""] {
        health
            .set_service_status(name, tonic_health::ServingStatus::NotServing)
            .await;
    }
}

/// Runs blocking work (files, SQLite, libtorch) off the async threads and maps its error.
/// The work runs in the caller's span (the RPC's), so a job submitted there is traced as
/// its child.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::jobs::JobError> + Send + 'static,
) -> Result<T, tonic::Status> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(status::from_task_error)?
        .map_err(status::from_job_error)
}

/// Every gRPC method the server serves, as `package.Service/Method` (from the descriptors
/// it serves by reflection): the names the request metrics may use as labels.
pub fn method_names() -> std::collections::HashSet<String> {
    use prost::Message;
    let mut names: std::collections::HashSet<String> = [
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for set in [
        pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    names.insert(format!(
                        "{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    names
}
