//! Authorized-operations bitfields (KIP-430) in Metadata, DescribeCluster and
//! DescribeGroups. Weir has no ACLs yet, so a client that asks is told that every operation
//! Kafka supports on the resource is allowed (Kafka's answer with no authorizer); one that
//! does not ask gets Kafka's "omitted" marker. Admin clients that ask and get the marker
//! instead read its sign bit as operation 31 and fail (kafka-python 2.3 does).

/// Kafka's "authorized operations not requested" marker.
pub const OMITTED: i32 = i32::MIN;

/// Kafka's `AclOperation` codes.
const READ: u32 = 3;
const WRITE: u32 = 4;
const CREATE: u32 = 5;
const DELETE: u32 = 6;
const ALTER: u32 = 7;
const DESCRIBE: u32 = 8;
const CLUSTER_ACTION: u32 = 9;
const DESCRIBE_CONFIGS: u32 = 10;
const ALTER_CONFIGS: u32 = 11;
const IDEMPOTENT_WRITE: u32 = 12;

const fn bits(operations: &[u32]) -> i32 {
    let mut field = 0u32;
    let mut i = 0;
    while i < operations.len() {
        field |= 1 << operations[i];
        i += 1;
    }
    field as i32
}

/// Kafka's `AclEntry.supportedOperations` for each resource type.
const TOPIC: i32 = bits(&[
    READ,
    WRITE,
    CREATE,
    DELETE,
    ALTER,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
]);
const CLUSTER: i32 = bits(&[
    CREATE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
    ALTER,
    DESCRIBE,
]);
const GROUP: i32 = bits(&[READ, DESCRIBE, DELETE]);

pub fn topic(requested: bool) -> i32 {
    if requested {
        TOPIC
    } else {
        OMITTED
    }
}

pub fn cluster(requested: bool) -> i32 {
    if requested {
        CLUSTER
    } else {
        OMITTED
    }
}

pub fn group(requested: bool) -> i32 {
    if requested {
        GROUP
    } else {
        OMITTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfields_are_kafkas() {
        // READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
        assert_eq!(topic(true), 3576);
        assert_eq!(cluster(true), 8096);
        assert_eq!(group(true), 328);
        assert_eq!(topic(false), i32::MIN);
        assert!(
            topic(true) > 0 && cluster(true) > 0,
            "no sign bit: no operation 31"
        );
    }
}
