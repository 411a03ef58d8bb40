//! Classifying `SdkError`s without flattening them to strings.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use sightline_core::retry::{ErrorClass, classify_aws};

/// Timeouts, I/O and malformed responses are transient; service errors by code
/// and status; request-construction errors are permanent.
pub fn classify_sdk<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> ErrorClass {
    match err {
        SdkError::ConstructionFailure(_) => ErrorClass::Permanent,
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => ErrorClass::Transient,
        SdkError::DispatchFailure(d) if d.is_user() => ErrorClass::Permanent,
        SdkError::DispatchFailure(_) => ErrorClass::Transient,
        SdkError::ServiceError(s) => classify_aws(s.err().code(), Some(s.raw().status().as_u16())),
        _ => ErrorClass::Transient,
    }
}
