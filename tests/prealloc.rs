//! A request that declares a huge array in a few bytes must not make the decoder reserve
//! memory for it. Upstream kafka-protocol 0.18 reserved `Vec::with_capacity(count)` with the
//! count read from the wire, so a 40-byte frame asked the allocator for hundreds of GB and
//! aborted the broker; the vendored patch (`vendor/kafka-protocol/WEIR-PATCH.md`) caps every
//! such reservation. This binary counts allocations with its own global allocator, so the
//! test sees the largest single request the decoder made, not just whether it survived.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, remembering the largest allocation asked of it.
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator, with the caller's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as `alloc`; `ptr` and `layout` are the caller's, from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// More than any honest request of these sizes needs, far less than a forged count asks for.
const ALLOCATION_MAX: usize = 1 << 20;

/// Request header v1 (non-flexible): key, version, correlation id, client id.
fn header_v1(api_key: i16, version: i16) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.extend_from_slice(&1i16.to_be_bytes());
    frame.push(b'x');
    frame
}

/// Request header v2 (flexible): v1 and an empty tagged-field section.
fn header_v2(api_key: i16, version: i16) -> Vec<u8> {
    let mut frame = header_v1(api_key, version);
    frame.push(0);
    frame
}

/// Decodes `frame` as the broker does and returns the largest allocation made meanwhile.
fn largest_allocation_decoding(frame: &[u8]) -> usize {
    LARGEST.store(0, Ordering::Relaxed);
    weir::fuzzing::request_frame(frame);
    LARGEST.load(Ordering::Relaxed)
}

#[test]
fn a_forged_array_count_reserves_nothing_near_what_it_claims() {
    // Produce v3: transactional id null, acks, timeout, then topic_data claiming 2^31 - 1
    // topics, with 16 bytes behind the count.
    let mut produce = header_v1(0, 3);
    produce.extend_from_slice(&(-1i16).to_be_bytes());
    produce.extend_from_slice(&(-1i16).to_be_bytes());
    produce.extend_from_slice(&30_000i32.to_be_bytes());
    produce.extend_from_slice(&i32::MAX.to_be_bytes());
    produce.extend_from_slice(&[0; 16]);

    // Metadata v12 (flexible): a compact array of topics claiming 2^31 - 2 entries (the
    // unsigned varint holds count + 1).
    let mut metadata = header_v2(3, 12);
    metadata.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    metadata.extend_from_slice(&[0; 16]);

    // CreateTopics v2: topics claiming 2^31 - 1 entries, each of which would carry arrays.
    let mut create_topics = header_v1(19, 2);
    create_topics.extend_from_slice(&i32::MAX.to_be_bytes());
    create_topics.extend_from_slice(&[0; 16]);

    for (name, frame) in [
        ("Produce v3", produce),
        ("Metadata v12", metadata),
        ("CreateTopics v2", create_topics),
    ] {
        let largest = largest_allocation_decoding(&frame);
        assert!(
            largest < ALLOCATION_MAX,
            "decoding a {}-byte {name} frame allocated {largest} bytes at once",
            frame.len()
        );
    }
}

#[test]
fn an_honest_request_still_decodes_with_the_cap() {
    // The cap bounds the reservation, not the decode: 2,000 topics (more than the 1,024
    // reserved up front) all arrive.
    use kafka_protocol::messages::{MetadataRequest, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    let topics = (0..2_000)
        .map(|i| {
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(format!("topic-{i}")))))
        })
        .collect();
    let request = MetadataRequest::default().with_topics(Some(topics));
    let mut body = bytes::BytesMut::new();
    request.encode(&mut body, 12).unwrap();
    let decoded = MetadataRequest::decode(&mut body.freeze(), 12).unwrap();
    assert_eq!(decoded.topics.map(|t| t.len()), Some(2_000));
}
