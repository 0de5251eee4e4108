//! The service's own types: what a job is, what happens to it. Transport converts the
//! generated protobuf types to and from these; nothing here knows gRPC or tokio.

mod checkpoint;
mod dataset;
mod event;
mod job_kind;
mod range_test;
mod run;
mod spec;

pub use checkpoint::{Checkpoint, DType, HostTensor};
pub use dataset::{DatasetInfo, ModelInfo, ModelParameter, UploadKind};
pub use event::{
    EpochEnd, EventKind, FeatureInfo, IterationProgress, JobEvent, JobStatus, LayerDiagnostics,
    RunInfo,
};
pub use job_kind::JobKind;
pub use range_test::{LrPoint, LrSuggestion, RangeTest};
pub use run::RunId;
pub use spec::{
    Activation, ArrayFormat, ArraysSpec, ClassWeighting, CnnSpec, ConvBlock,
    DEFAULT_SHUFFLE_BUFFER, DatasetSpec, EarlyStopping, EnsembleSpec, JobSpec, LossSpec,
    LrSchedule, MAX_BATCH_SIZE, MAX_ENSEMBLE_MEMBERS, MAX_EPOCHS, MlpSpec, ModelSelection,
    ModelSpec, ModelVersion, OptimizerSpec, Pool, ResamplingMethod, ResamplingSpec, ScriptSpec,
    SpecError, SyntheticSpec, validate_schedule,
};
