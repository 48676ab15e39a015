//! A partition directory belongs to one topic, named by its topic id (Kafka's
//! `partition.metadata`), and goes by a durable rename to a `-delete` name: a directory a
//! crash left behind by a deleted topic is never adopted by a new topic of the same name,
//! and a removal a crash cut short is finished at the next start.

mod common;

use common::requests::{create_topic, fetched_bases, produce, s};
use common::{Broker, Client};
use kafka_protocol::messages::*;

fn delete_topic(client: &mut Client, name: &str) {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topic_names(vec![TopicName(s(name))]);
    let r: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, 4, &request);
    assert_eq!(r.responses[0].error_code, 0);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_deleted_topics_directory_left_by_a_crash_is_not_adopted_by_its_successor() {
    let mut broker = Broker::start(&[]);
    let mut client = broker.connect();
    create_topic(&mut client, "reborn", 1, &[]);
    for value in [&b"old-1"[..], b"old-2", b"old-3"] {
        assert_eq!(produce(&mut client, "reborn", 0, value).0, 0);
    }
    let dir = broker.data_path().join("reborn-0");
    assert!(
        dir.join("partition.metadata").exists(),
        "the directory names its topic"
    );
    broker.restart();
    let saved = broker.data_dir.path().join("saved-reborn-0");
    copy_dir(&dir, &saved);
    let mut client = broker.connect();
    delete_topic(&mut client, "reborn");
    let status = broker.stop();
    assert!(status.success());
    // What a crash between DeleteTopics' metadata commit and its rename leaves: the
    // metadata without the topic, the directory still under its own name.
    copy_dir(&saved, &dir);

    broker.start_again();
    assert!(
        !dir.exists(),
        "a directory no topic has is removed at start: {}",
        broker.log_text()
    );
    let mut client = broker.connect();
    create_topic(&mut client, "reborn", 1, &[]);
    assert_eq!(
        fetched_bases(&mut client, "reborn", 0),
        Vec::<i64>::new(),
        "the new topic starts empty"
    );
    assert_eq!(produce(&mut client, "reborn", 0, b"new").1, 0);
    broker.restart();
    let mut client = broker.connect();
    assert_eq!(fetched_bases(&mut client, "reborn", 0), [0]);
}

#[test]
fn a_removal_cut_short_is_finished_and_an_older_directory_is_adopted() {
    let mut broker = Broker::start(&[]);
    let mut client = broker.connect();
    create_topic(&mut client, "kept", 1, &[]);
    assert_eq!(produce(&mut client, "kept", 0, b"v").0, 0);
    let status = broker.stop();
    assert!(status.success());
    let data = broker.data_path();
    // A data dir from before topic ids were recorded, and a removal a crash cut short.
    std::fs::remove_file(data.join("kept-0").join("partition.metadata")).unwrap();
    let leftover = data.join("gone-0.0000000000000000000000000000002a-delete");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join("00000000000000000000.log"), b"garbage").unwrap();

    broker.start_again();
    let mut client = broker.connect();
    assert_eq!(
        fetched_bases(&mut client, "kept", 0),
        [0],
        "the data is kept"
    );
    assert!(data.join("kept-0").join("partition.metadata").exists());
    assert!(!leftover.exists(), "{}", broker.log_text());
}
