//! Sightline's domain, free of any AWS SDK: the Dataset A model and its
//! validation, Dataset B, the dedup decisions, and the batch orchestration over
//! store and sink ports.

pub mod archive;
pub mod batch;
pub mod cost;
pub mod dataset_b;
pub mod decode;
pub mod defaults;
pub mod delivery;
pub mod env;
pub mod kpl;
pub mod metrics;
pub mod model;
pub mod packing;
pub mod ports;
pub mod quarantine;
pub mod replay;
pub mod retry;
pub mod seq;
pub mod time;

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
#[cfg(feature = "fault-points")]
pub mod fault_points;

pub use batch::{BatchReport, DuplicateKind, Fate, Pipeline, PipelineConfig};
pub use dataset_b::DatasetB;
pub use model::{InputRecord, OutputEvent};
pub use time::{Clock, Deadline, SystemClock};
