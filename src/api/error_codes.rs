//! The error codes a response carries, for the per-API error metric
//! (`weir_request_errors_total{api,error}`, Kafka's `RequestMetrics ErrorsPerSec`): Kafka
//! counts every error code in a response, top-level and per topic, partition or member.
//!
//! Walked once per response, after it is built; a response without errors adds nothing.

use kafka_protocol::messages::*;

/// Calls `f` with every error code in the response, zeros included (the caller skips them).
pub trait ErrorCodes {
    fn error_codes(&self, f: &mut dyn FnMut(i16));
}

/// Responses whose codes sit in fields at fixed paths: top-level codes, then each level's
/// list and its codes.
macro_rules! error_codes {
    ($ty:ty => |$r:ident, $f:ident| $body:block) => {
        impl ErrorCodes for $ty {
            fn error_codes(&self, $f: &mut dyn FnMut(i16)) {
                let $r = self;
                $body
            }
        }
    };
}

error_codes!(ProduceResponse => |r, f| {
    r.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| f(p.error_code));
});
error_codes!(ListOffsetsResponse => |r, f| {
    r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
});
error_codes!(MetadataResponse => |r, f| {
    f(r.error_code);
    for topic in &r.topics {
        f(topic.error_code);
        topic.partitions.iter().for_each(|p| f(p.error_code));
    }
});
error_codes!(CreateTopicsResponse => |r, f| { r.topics.iter().for_each(|t| f(t.error_code)); });
error_codes!(DeleteTopicsResponse => |r, f| { r.responses.iter().for_each(|t| f(t.error_code)); });
error_codes!(CreatePartitionsResponse => |r, f| { r.results.iter().for_each(|t| f(t.error_code)); });
error_codes!(DeleteRecordsResponse => |r, f| {
    r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
});
error_codes!(DescribeLogDirsResponse => |r, f| {
    f(r.error_code);
    r.results.iter().for_each(|d| f(d.error_code));
});
error_codes!(AlterConfigsResponse => |r, f| { r.responses.iter().for_each(|c| f(c.error_code)); });
error_codes!(IncrementalAlterConfigsResponse => |r, f| {
    r.responses.iter().for_each(|c| f(c.error_code));
});
error_codes!(DescribeConfigsResponse => |r, f| { r.results.iter().for_each(|c| f(c.error_code)); });
error_codes!(DescribeClusterResponse => |r, f| { f(r.error_code); });
error_codes!(ApiVersionsResponse => |r, f| { f(r.error_code); });
error_codes!(FindCoordinatorResponse => |r, f| {
    f(r.error_code);
    r.coordinators.iter().for_each(|c| f(c.error_code));
});
error_codes!(JoinGroupResponse => |r, f| { f(r.error_code); });
error_codes!(SyncGroupResponse => |r, f| { f(r.error_code); });
error_codes!(HeartbeatResponse => |r, f| { f(r.error_code); });
error_codes!(LeaveGroupResponse => |r, f| {
    f(r.error_code);
    r.members.iter().for_each(|m| f(m.error_code));
});
error_codes!(OffsetCommitResponse => |r, f| {
    r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
});
error_codes!(OffsetFetchResponse => |r, f| {
    f(r.error_code);
    r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    for group in &r.groups {
        f(group.error_code);
        group.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
});
error_codes!(DescribeGroupsResponse => |r, f| { r.groups.iter().for_each(|g| f(g.error_code)); });
error_codes!(ListGroupsResponse => |r, f| { f(r.error_code); });
error_codes!(DeleteGroupsResponse => |r, f| { r.results.iter().for_each(|g| f(g.error_code)); });
error_codes!(OffsetDeleteResponse => |r, f| {
    f(r.error_code);
    r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
});
error_codes!(InitProducerIdResponse => |r, f| { f(r.error_code); });

/// The nonzero codes of a response.
pub fn nonzero(response: &dyn ErrorCodes) -> Vec<i16> {
    let mut codes = Vec::new();
    response.error_codes(&mut |code| {
        if code != 0 {
            codes.push(code);
        }
    });
    codes
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };

    #[test]
    fn every_partition_error_is_found_and_zeros_are_not() {
        let response =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_partition_responses(vec![
                    PartitionProduceResponse::default().with_error_code(3),
                    PartitionProduceResponse::default(),
                    PartitionProduceResponse::default().with_error_code(45),
                ])]);
        assert_eq!(nonzero(&response), vec![3, 45]);
        assert!(nonzero(&HeartbeatResponse::default()).is_empty());
    }
}
