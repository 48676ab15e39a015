// The Java client (kafka-clients 4.x, as most Kafka users run it) against a broker: the
// producer with its defaults (idempotence on, acks=all, 5 requests in flight, retries) in
// every codec, with keys, headers and messages near the size limit; a classic-protocol
// consumer group reading all of it back; and the AdminClient calls operators and tools make.
// Each check that fails throws, and the process exits 1 with the reason; on success the last
// line of output is a JSON summary the pytest reads.
//
// Run with the jars of scripts/kafka-peer.sh, through Java's single-file source launcher:
//   java -cp "$(scripts/kafka-peer.sh libs)/*" tests/java/ClientMatrix.java HOST:PORT PREFIX

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.*;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.*;

public class ClientMatrix {
    static final int PARTITIONS = 4;
    static final int RECORDS_PER_CODEC = 4_000;
    static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};

    static String bootstrap;
    static String prefix;

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static Properties common() {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("client.id", prefix);
        return p;
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        prefix = args[1];
        if (args.length > 2 && args[2].equals("produce-steadily")) {
            produceSteadily(args[1], Integer.parseInt(args[3]), Integer.parseInt(args[4]));
            return;
        }
        Map<String, Object> summary = new LinkedHashMap<>();
        try (Admin admin = Admin.create(common())) {
            String topic = prefix + "-records";
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1)
                    .configs(Map.of("max.message.bytes", "2097152")))).all().get(30, TimeUnit.SECONDS);
            summary.put("produced", produceEveryCodec(topic));
            summary.put("large", produceLarge(topic));
            summary.put("consumed", consumeAll(admin, topic));
            summary.put("admin", adminCalls(admin));
        }
        System.out.println(toJson(summary));
    }

    /** RECORDS_PER_CODEC keyed records with headers per codec, the producer's defaults otherwise. */
    static Map<String, Integer> produceEveryCodec(String topic) throws Exception {
        Map<String, Integer> acked = new LinkedHashMap<>();
        for (String codec : CODECS) {
            Properties p = common();
            p.put("compression.type", codec);
            p.put("linger.ms", "5");
            // Retries across a short delivery timeout prove nothing is duplicated on resend.
            p.put("max.in.flight.requests.per.connection", "5");
            try (Producer<String, String> producer =
                         new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
                List<java.util.concurrent.Future<RecordMetadata>> sent = new ArrayList<>();
                for (int i = 0; i < RECORDS_PER_CODEC; i++) {
                    ProducerRecord<String, String> r = new ProducerRecord<>(topic, "key-" + (i % 97),
                            codec + "-" + i);
                    r.headers().add("codec", codec.getBytes(StandardCharsets.UTF_8));
                    r.headers().add("seq", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                    sent.add(producer.send(r));
                }
                producer.flush();
                int ok = 0;
                for (var f : sent) {
                    RecordMetadata m = f.get(30, TimeUnit.SECONDS);
                    check(m.offset() >= 0 && m.partition() >= 0 && m.partition() < PARTITIONS,
                            "acked at " + m);
                    ok++;
                }
                acked.put(codec, ok);
            }
        }
        return acked;
    }

    /** A record near max.message.bytes is stored; one over it is refused with RecordTooLarge. */
    static Map<String, Object> produceLarge(String topic) throws Exception {
        Properties p = common();
        p.put("max.request.size", "8388608");
        p.put("compression.type", "none");
        Map<String, Object> out = new LinkedHashMap<>();
        try (Producer<String, byte[]> producer =
                     new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer())) {
            byte[] big = new byte[1_900_000];
            Arrays.fill(big, (byte) 'x');
            RecordMetadata m = producer.send(new ProducerRecord<>(topic, 0, "large", big)).get(30, TimeUnit.SECONDS);
            out.put("stored_bytes", big.length);
            out.put("offset", m.offset());
            try {
                producer.send(new ProducerRecord<>(topic, 0, "too-large", new byte[3_000_000])).get(30, TimeUnit.SECONDS);
                throw new AssertionError("a 3 MB record was accepted under max.message.bytes=2 MiB");
            } catch (java.util.concurrent.ExecutionException e) {
                check(e.getCause() instanceof RecordTooLargeException, "refused with " + e.getCause());
                out.put("refused", e.getCause().getClass().getSimpleName());
            }
        }
        return out;
    }

    /** Two members of one classic group read everything once, in order per partition. */
    static Map<String, Object> consumeAll(Admin admin, String topic) throws Exception {
        String group = prefix + "-group";
        int expected = RECORDS_PER_CODEC * CODECS.length + 1;
        Map<TopicPartition, Long> ends = new HashMap<>();
        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
        for (int i = 0; i < PARTITIONS; i++) latest.put(new TopicPartition(topic, i), OffsetSpec.latest());
        admin.listOffsets(latest).all().get(30, TimeUnit.SECONDS).forEach((tp, info) -> ends.put(tp, info.offset()));
        check(ends.values().stream().mapToLong(Long::longValue).sum() == expected, "end offsets " + ends);

        Set<String> seen = Collections.synchronizedSet(new HashSet<>());
        Map<Integer, Long> lastOffset = Collections.synchronizedMap(new HashMap<>());
        List<String> problems = Collections.synchronizedList(new ArrayList<>());
        Runnable member = () -> {
            Properties p = common();
            p.put("group.id", group);
            p.put("auto.offset.reset", "earliest");
            p.put("enable.auto.commit", "false");
            p.put("group.protocol", "classic");
            p.put("partition.assignment.strategy",
                    "org.apache.kafka.clients.consumer.CooperativeStickyAssignor");
            p.put("max.partition.fetch.bytes", "4194304");
            try (Consumer<String, byte[]> consumer =
                         new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer())) {
                consumer.subscribe(List.of(topic));
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
                while (seen.size() < expected && System.nanoTime() < deadline) {
                    for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                        Long before = lastOffset.put(r.partition(), r.offset());
                        if (before != null && before >= r.offset())
                            problems.add("partition " + r.partition() + " went " + before + " -> " + r.offset());
                        String value = r.key().equals("large") ? "large" : new String(r.value(), StandardCharsets.UTF_8);
                        if (!seen.add(value)) problems.add("twice: " + value);
                        if (!r.key().equals("large")) {
                            Header codec = r.headers().lastHeader("codec");
                            Header seq = r.headers().lastHeader("seq");
                            String expectValue = new String(codec.value(), StandardCharsets.UTF_8) + "-"
                                    + new String(seq.value(), StandardCharsets.UTF_8);
                            if (!expectValue.equals(value)) problems.add("headers " + expectValue + " on " + value);
                            int i = Integer.parseInt(new String(seq.value(), StandardCharsets.UTF_8));
                            if (!r.key().equals("key-" + (i % 97))) problems.add("key " + r.key() + " on " + value);
                        } else if (r.value().length != 1_900_000) {
                            problems.add("large record of " + r.value().length + " bytes");
                        }
                    }
                    consumer.commitSync();
                }
            } catch (Exception e) {
                problems.add("member: " + e);
            }
        };
        Thread a = new Thread(member), b = new Thread(member);
        a.start();
        b.start();
        a.join();
        b.join();
        check(problems.isEmpty(), "consumption: " + problems.subList(0, Math.min(10, problems.size())));
        check(seen.size() == expected, "consumed " + seen.size() + " of " + expected);

        Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
        for (var e : ends.entrySet())
            check(committed.get(e.getKey()) != null && committed.get(e.getKey()).offset() == e.getValue(),
                    "committed " + committed + " ends " + ends);
        ConsumerGroupDescription described =
                admin.describeConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS).get(group);
        check(described.groupState() == GroupState.EMPTY, "group state after both left: " + described.groupState());
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("records", seen.size());
        out.put("committed_partitions", committed.size());
        return out;
    }

    /** The AdminClient calls operators, tools and dashboards make, each with its outcome checked. */
    static List<String> adminCalls(Admin admin) throws Exception {
        List<String> done = new ArrayList<>();
        String topic = prefix + "-admin";
        admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
        try {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
            throw new AssertionError("created twice");
        } catch (java.util.concurrent.ExecutionException e) {
            check(e.getCause() instanceof TopicExistsException, "second create: " + e.getCause());
        }
        done.add("createTopics");

        check(admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic), "listed");
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
        check(d.partitions().size() == 2 && d.partitions().get(0).leader() != null, "described " + d);
        done.add("describeTopics");

        DescribeClusterResult cluster = admin.describeCluster();
        check(!cluster.nodes().get(30, TimeUnit.SECONDS).isEmpty() && cluster.clusterId().get() != null
                && cluster.controller().get() != null, "cluster");
        done.add("describeCluster");

        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "123456"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND))))
                .all().get(30, TimeUnit.SECONDS);
        Config config = admin.describeConfigs(List.of(resource)).all().get(30, TimeUnit.SECONDS).get(resource);
        check("123456".equals(config.get("retention.ms").value()), "retention.ms " + config.get("retention.ms"));
        check(config.get("retention.ms").source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, "source");
        check(Set.of(config.get("cleanup.policy").value().split(",")).equals(Set.of("delete", "compact")),
                "cleanup.policy " + config.get("cleanup.policy"));
        try {
            admin.incrementalAlterConfigs(Map.of(resource, List.of(new AlterConfigOp(
                    new ConfigEntry("retention.ms", "later"), AlterConfigOp.OpType.SET)))).all().get(30, TimeUnit.SECONDS);
            throw new AssertionError("retention.ms=later accepted");
        } catch (java.util.concurrent.ExecutionException e) {
            check(e.getCause() instanceof InvalidConfigurationException, "bad config: " + e.getCause());
        }
        done.add("incrementalAlterConfigs");
        done.add("describeConfigs");

        admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get(30, TimeUnit.SECONDS);
        d = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
        check(d.partitions().size() == 3, "after createPartitions: " + d.partitions().size());
        done.add("createPartitions");

        // Ten keyless records on partition 0, then delete the first four.
        Properties p = common();
        try (Producer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < 10; i++) producer.send(new ProducerRecord<>(topic, 0, "k" + i, "v" + i)).get(30, TimeUnit.SECONDS);
        }
        TopicPartition p0 = new TopicPartition(topic, 0);
        // cleanup.policy is compact,delete: records can still be deleted.
        DeletedRecords deleted = admin.deleteRecords(Map.of(p0, RecordsToDelete.beforeOffset(4))).lowWatermarks()
                .get(p0).get(30, TimeUnit.SECONDS);
        check(deleted.lowWatermark() == 4, "low watermark " + deleted.lowWatermark());
        long earliest = admin.listOffsets(Map.of(p0, OffsetSpec.earliest())).all().get(30, TimeUnit.SECONDS).get(p0).offset();
        long latestOffset = admin.listOffsets(Map.of(p0, OffsetSpec.latest())).all().get(30, TimeUnit.SECONDS).get(p0).offset();
        check(earliest == 4 && latestOffset == 10, "offsets " + earliest + ".." + latestOffset);
        long maxTs = admin.listOffsets(Map.of(p0, OffsetSpec.maxTimestamp())).all().get(30, TimeUnit.SECONDS).get(p0).offset();
        check(maxTs >= 4 && maxTs <= 9, "max timestamp offset " + maxTs);
        done.add("deleteRecords");
        done.add("listOffsets");

        // A group's offsets set by the admin client, read back, deleted.
        String group = prefix + "-admin-group";
        admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(7, "by admin"))).all().get(30, TimeUnit.SECONDS);
        OffsetAndMetadata at = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()
                .get(30, TimeUnit.SECONDS).get(p0);
        check(at != null && at.offset() == 7 && "by admin".equals(at.metadata()), "group offset " + at);
        check(admin.listGroups().all().get(30, TimeUnit.SECONDS).stream()
                .anyMatch(g -> g.groupId().equals(group)), "group listed");
        admin.deleteConsumerGroupOffsets(group, Set.of(p0)).all().get(30, TimeUnit.SECONDS);
        check(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS)
                .get(p0) == null, "offset deleted");
        admin.deleteConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS);
        done.add("alterConsumerGroupOffsets");
        done.add("deleteConsumerGroupOffsets");
        done.add("deleteConsumerGroups");

        Map<Integer, Map<String, LogDirDescription>> dirs =
                admin.describeLogDirs(List.of(0)).allDescriptions().get(30, TimeUnit.SECONDS);
        LogDirDescription dir = dirs.get(0).values().iterator().next();
        check(dir.replicaInfos().get(p0) != null && dir.replicaInfos().get(p0).size() > 0, "log dir " + dir);
        done.add("describeLogDirs");

        admin.deleteTopics(List.of(topic)).all().get(30, TimeUnit.SECONDS);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic)) {
            check(System.nanoTime() < deadline, "topic still listed after delete");
            Thread.sleep(100);
        }
        done.add("deleteTopics");
        return done;
    }

    /**
     * `count` records "j-0", "j-1", ... to partitions i % 2 of `topic` at about `rate` a second,
     * with the producer's defaults and a delivery timeout long enough to ride out a broker
     * restart; prints the number acknowledged and failed. The caller kills the broker meanwhile.
     */
    static void produceSteadily(String topic, int count, int rate) throws Exception {
        Properties p = common();
        p.put("delivery.timeout.ms", "120000");
        p.put("request.timeout.ms", "10000");
        p.put("retry.backoff.ms", "100");
        p.put("reconnect.backoff.max.ms", "500");
        p.put("linger.ms", "2");
        java.util.concurrent.atomic.AtomicInteger acked = new java.util.concurrent.atomic.AtomicInteger();
        List<String> failed = Collections.synchronizedList(new ArrayList<>());
        try (Producer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            long start = System.nanoTime();
            for (int i = 0; i < count; i++) {
                long due = start + (long) i * 1_000_000_000L / rate;
                long wait = due - System.nanoTime();
                if (wait > 0) Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                producer.send(new ProducerRecord<>(topic, i % 2, null, "j-" + i), (m, e) -> {
                    if (e == null) acked.incrementAndGet();
                    else failed.add(e.toString());
                });
            }
            producer.flush();
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("acked", acked.get());
        out.put("failed", failed.size());
        out.put("first_failures", failed.subList(0, Math.min(3, failed.size())));
        System.out.println(toJson(out));
    }

    static String toJson(Object o) {
        if (o instanceof Map<?, ?> m)
            return m.entrySet().stream().map(e -> "\"" + e.getKey() + "\":" + toJson(e.getValue()))
                    .collect(Collectors.joining(",", "{", "}"));
        if (o instanceof Collection<?> c)
            return c.stream().map(ClientMatrix::toJson).collect(Collectors.joining(",", "[", "]"));
        if (o instanceof String s) return "\"" + s + "\"";
        return String.valueOf(o);
    }
}
