// KafkaJS against Weir: admin, producer and (group) consumer APIs.
// Usage: node smoke.js <bootstrap> <topic>
// Prints one JSON line with what it saw; exits non-zero on any failure. The Python test also
// reads the messages back with kafka-python.
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: 'weir-kafkajs-test', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  const validated = `${topic}-validated`;
  // waitForLeaders off: KafkaJS would otherwise wait for metadata of a topic that, rightly, does not exist.
  const validateOnly = await admin.createTopics({ validateOnly: true, waitForLeaders: false, topics: [{ topic: validated, numPartitions: 2 }] });
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] });
  const again = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] });
  const topics = await admin.listTopics();
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });

  const producer = kafka.producer();
  await producer.connect();
  const plain = await producer.send({
    topic,
    acks: -1,
    messages: Array.from({ length: 100 }, (_, i) => ({
      key: `k${i}`, value: `plain-${i}`, partition: i % 3, headers: { n: `${i}` },
    })),
  });
  const gzip = await producer.send({
    topic,
    acks: -1,
    compression: CompressionTypes.GZIP,
    messages: Array.from({ length: 100 }, (_, i) => ({ key: `g${i}`, value: `gzip-${i}`, partition: i % 3 })),
  });
  await producer.disconnect();

  // KafkaJS consumers are group consumers: read everything back from the beginning.
  const consumer = kafka.consumer({ groupId: `${topic}-group`, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const consumed = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`consumed only ${consumed.length} of 200`)), 60000);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        consumed.push({
          partition, offset: message.offset, key: message.key.toString(), value: message.value.toString(),
          n: message.headers.n ? message.headers.n.toString() : null,
        });
        if (consumed.length === 200) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  const committed = await admin.fetchOffsets({ groupId: `${topic}-group`, topics: [topic] });

  const offsets = await admin.fetchTopicOffsets(topic);
  // Every message carries a create time of "now", so a timestamp far in the past finds offset 0.
  const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, 1000);
  const scratch = `${topic}-scratch`;
  await admin.createTopics({ topics: [{ topic: scratch }] });
  await admin.deleteTopics({ topics: [scratch] });
  const afterDelete = await admin.listTopics();
  await admin.disconnect();

  console.log(JSON.stringify({
    validateOnly, validatedListed: topics.includes(validated),
    created, again, listed: topics.includes(topic),
    byTime: byTime.map((o) => ({ partition: o.partition, offset: o.offset })),
    partitions: metadata.topics[0].partitions.length,
    acked: plain.length + gzip.length,
    offsets: offsets.map((o) => ({ partition: o.partition, high: o.high, low: o.low })),
    scratchDeleted: !afterDelete.includes(scratch),
    consumed,
    committed: committed[0].partitions.map((p) => ({ partition: p.partition, offset: p.offset })),
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
