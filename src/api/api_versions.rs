//! ApiVersions: the APIs and versions this broker serves (KIP-35, KIP-511).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{Answer, RequestContext, SUPPORTED_APIS};
use crate::server::response::{self, Response};

fn api_list() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

pub fn handle(request: RequestContext, _body: ApiVersionsRequest) -> Answer {
    request.reply(&ApiVersionsResponse::default().with_api_keys(api_list()))
}

/// The v0 response with UNSUPPORTED_VERSION and the full list, for a client asking with a
/// version newer than ours (its header version 0 is fixed for ApiVersions responses).
pub fn unsupported_version(correlation_id: i32) -> Response {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_list());
    let header_version = ApiKey::ApiVersions.response_header_version(0);
    response::encode(correlation_id, header_version, &body, 0)
        .expect("a v0 ApiVersions response always encodes")
}
