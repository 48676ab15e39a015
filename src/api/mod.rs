//! Kafka API dispatch: which APIs and versions Weir serves, and the handler for each.
//!
//! One file per API, named after it. Handlers get their request decoded by kafka-protocol
//! (produce record batches stay opaque `Bytes` slices of the frame) and return a response
//! frame; Fetch writes its own response so that record data can be sent with sendfile.

pub mod alter_configs;
pub mod api_versions;
pub mod authorized_operations;
pub mod config_resources;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod error_codes;
pub mod fetch;
pub mod fetch_response;
pub mod find_coordinator;
pub mod group_route;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod sync_group;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::server::response::{self, Response};
use crate::shard_context::ShardContext;

/// The APIs Weir serves and the version range of each, as advertised by ApiVersions. Ranges
/// start at Kafka 4.0's minimums (KIP-896) or lower and reach the versions current clients
/// (librdkafka 2.x, Java 3.x/4.x, kafka-python, KafkaJS) ask for.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::InitProducerId, 0, 5),
];

pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

pub type Answer = Result<Option<Response>, anyhow::Error>;
pub type Handler = Pin<Box<dyn Future<Output = Answer>>>;

/// Why a frame gets no handler.
pub enum DispatchError {
    /// Answer at once with this response (ApiVersions at an unsupported version).
    Respond(Response),
    /// Close the connection, as Kafka does for requests it cannot parse.
    Close(String),
}

/// What every handler needs to answer its request.
#[derive(Clone, Copy, Debug)]
pub struct RequestContext {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
}

impl RequestContext {
    pub fn response_header_version(&self) -> i16 {
        self.api_key.response_header_version(self.version)
    }

    /// Encodes `body` as this request's response, noting its error codes for metrics.
    pub fn reply<T: Encodable + error_codes::ErrorCodes>(&self, body: &T) -> Answer {
        let mut response = response::encode(
            self.correlation_id,
            self.response_header_version(),
            body,
            self.version,
        )?;
        response.error_codes = error_codes::nonzero(body);
        Ok(Some(response))
    }
}

/// Who sent a request: what group members are described with (DescribeGroups shows both).
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub client_id: String,
    pub host: String,
}

/// Reads the request header and returns the future that answers the request. `peer` is the
/// connection's remote address, as Kafka shows it (`/127.0.0.1`).
pub fn dispatch(
    ctx: &Rc<ShardContext>,
    frame: Bytes,
    peer: &Rc<str>,
) -> Result<Handler, DispatchError> {
    let (request, client_id, body) = parse_header(frame)?;
    tracing::trace!(api = ?request.api_key, version = request.version, correlation_id = request.correlation_id, "request");
    let ctx = ctx.clone();
    let peer = peer.clone();
    Ok(Box::pin(async move {
        let decoded = decode_body(&request, body)?;
        let client = || ClientInfo {
            client_id: client_id.as_deref().unwrap_or_default().to_owned(),
            host: peer.to_string(),
        };
        handle(ctx, request, decoded, client).await
    }))
}

/// Checks the API and version and decodes the request header; returns the body bytes.
/// Pure, so the fuzz targets drive exactly what the server runs.
pub fn parse_header(
    frame: Bytes,
) -> Result<(RequestContext, Option<StrBytes>, Bytes), DispatchError> {
    if frame.len() < 8 {
        return Err(DispatchError::Close(format!(
            "{}-byte request is too short for a header",
            frame.len()
        )));
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(api_key)
        .map_err(|_| DispatchError::Close(format!("unknown API key {api_key}")))?;
    let Some((min, max)) = supported_versions(key) else {
        return Err(DispatchError::Close(format!("unsupported API {key:?}")));
    };
    if !(min..=max).contains(&version) {
        if key == ApiKey::ApiVersions {
            // KIP-511: a client newer than the broker learns the supported range from a v0
            // response carrying UNSUPPORTED_VERSION, then retries at a version both know.
            return Err(DispatchError::Respond(api_versions::unsupported_version(
                correlation_id,
            )));
        }
        return Err(DispatchError::Close(format!(
            "unsupported version {version} of {key:?} (supported {min}..={max})"
        )));
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, key.request_header_version(version))
        .map_err(|e| DispatchError::Close(format!("bad {key:?} v{version} request header: {e}")))?;
    Ok((
        RequestContext {
            api_key: key,
            version,
            correlation_id,
        },
        header.client_id,
        body,
    ))
}

/// Decodes a request body with kafka-protocol; produce records stay a slice of the frame.
pub fn decode_body(
    request: &RequestContext,
    mut body: Bytes,
) -> Result<RequestKind, anyhow::Error> {
    RequestKind::decode(request.api_key, &mut body, request.version).map_err(|e| {
        anyhow::anyhow!(
            "bad {:?} v{} request body: {e}",
            request.api_key,
            request.version
        )
    })
}

async fn handle(
    ctx: Rc<ShardContext>,
    request: RequestContext,
    decoded: RequestKind,
    client: impl FnOnce() -> ClientInfo,
) -> Answer {
    match decoded {
        RequestKind::Produce(r) => produce::handle(&ctx, request, r).await,
        RequestKind::Fetch(r) => fetch::handle(&ctx, request, r).await,
        RequestKind::ListOffsets(r) => list_offsets::handle(&ctx, request, r).await,
        RequestKind::Metadata(r) => metadata::handle(&ctx, request, r).await,
        RequestKind::ApiVersions(r) => api_versions::handle(request, r),
        RequestKind::CreateTopics(r) => create_topics::handle(&ctx, request, r).await,
        RequestKind::DeleteTopics(r) => delete_topics::handle(&ctx, request, r).await,
        RequestKind::DescribeConfigs(r) => describe_configs::handle(&ctx, request, r),
        RequestKind::DescribeCluster(r) => describe_cluster::handle(&ctx, request, r),
        RequestKind::FindCoordinator(r) => find_coordinator::handle(&ctx, request, r).await,
        RequestKind::JoinGroup(r) => join_group::handle(&ctx, request, r, client()).await,
        RequestKind::SyncGroup(r) => sync_group::handle(&ctx, request, r).await,
        RequestKind::Heartbeat(r) => heartbeat::handle(&ctx, request, r).await,
        RequestKind::LeaveGroup(r) => leave_group::handle(&ctx, request, r).await,
        RequestKind::OffsetCommit(r) => offset_commit::handle(&ctx, request, r).await,
        RequestKind::OffsetFetch(r) => offset_fetch::handle(&ctx, request, r).await,
        RequestKind::DescribeGroups(r) => describe_groups::handle(&ctx, request, r).await,
        RequestKind::ListGroups(r) => list_groups::handle(&ctx, request, r).await,
        RequestKind::DeleteGroups(r) => delete_groups::handle(&ctx, request, r).await,
        RequestKind::OffsetDelete(r) => offset_delete::handle(&ctx, request, r).await,
        RequestKind::DeleteRecords(r) => delete_records::handle(&ctx, request, r).await,
        RequestKind::DescribeLogDirs(r) => describe_log_dirs::handle(&ctx, request, r).await,
        RequestKind::AlterConfigs(r) => alter_configs::handle(&ctx, request, r).await,
        RequestKind::IncrementalAlterConfigs(r) => {
            incremental_alter_configs::handle(&ctx, request, r).await
        }
        RequestKind::CreatePartitions(r) => create_partitions::handle(&ctx, request, r).await,
        RequestKind::InitProducerId(r) => init_producer_id::handle(&ctx, request, r).await,
        // dispatch() admits only SUPPORTED_APIS, each of which has an arm above.
        _ => Err(anyhow::anyhow!("no handler for {:?}", request.api_key)),
    }
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Groups per-partition work by owner shard, so a request costs one cross-shard call per
/// shard rather than one per partition.
pub fn group_by_owner<T>(
    shard_count: usize,
    items: impl IntoIterator<Item = (usize, T)>,
) -> Vec<(usize, Vec<T>)> {
    let mut groups: Vec<Vec<T>> = (0..shard_count).map(|_| Vec::new()).collect();
    for (owner, item) in items {
        groups[owner].push(item);
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .collect()
}
