//! InitProducerId: a producer id and epoch for an idempotent producer (KIP-98), which the
//! Java client asks for by default (`enable.idempotence=true` since 3.0).
//!
//! As Kafka does for a producer without a transactional id, every request gets a new id at
//! epoch 0, whatever id and epoch it carries (KIP-360's bump is answered with a new id). Ids
//! come from shard 0 (`producer_ids`). Transactions are not served: a transactional id gets
//! INVALID_REQUEST (as FindCoordinator for a transaction coordinator does), so
//! `initTransactions()` fails clearly instead of hanging.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{Answer, RequestContext};
use crate::shard_context::ShardContext;

/// The shard that hands out producer ids.
const PRODUCER_ID_SHARD: usize = 0;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: InitProducerIdRequest,
) -> Answer {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(transactional_id) = body.transactional_id {
        tracing::info!(
            "InitProducerId for transactional id {:?}: transactions are not supported",
            transactional_id.0.as_str()
        );
        return request.reply(&response.with_error_code(ResponseError::InvalidRequest.code()));
    }
    let allocated = ctx
        .shard
        .invoke_on(PRODUCER_ID_SHARD, |owner: Rc<ShardContext>| async move {
            let manager = owner
                .producer_ids
                .as_ref()
                .expect("shard 0 owns the producer id manager");
            manager.allocate().await.map_err(|e| e.to_string())
        })
        .await?;
    let response = match allocated {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!("InitProducerId: {e}");
            response.with_error_code(ResponseError::KafkaStorageError.code())
        }
    };
    request.reply(&response)
}
