// A stateful Kafka Streams application (kafka-streams 4.x, at-least-once, the default) against
// a broker: lines are split into words, re-keyed by word (a repartition topic), and counted
// twice, in total (a key-value store with a compacted changelog) and per 10 s event-time
// window (a window store with a compact,delete changelog). Both counts stream out to topics
// the pytest reads; their last value per key is the count.
//
// Runs until stdin closes, then closes the application cleanly (committing, and leaving the
// group so a restarted instance is assigned at once) and prints a JSON summary as its last
// line: the records each store restored from its changelog at startup, and the internal
// topics Streams created with their partitions and cleanup.policy. The pytest may instead
// SIGKILL it. A failure of the application exits 1 with the reason.
//
//   java -cp "$(scripts/kafka-peer.sh libs)/*" tests/java/WordCount.java \
//       HOST:PORT APPLICATION_ID STATE_DIR INPUT COUNTS_TOPIC WINDOWED_COUNTS_TOPIC

import java.io.InputStream;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.*;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.*;
import org.apache.kafka.streams.processor.StateRestoreListener;

public class WordCount {
    static final Duration WINDOW = Duration.ofSeconds(10);
    // Far longer than the test's span of event time, so no record is ever dropped as late
    // however the repartition partitions interleave: the windowed counts are exact too.
    static final Duration GRACE = Duration.ofDays(1);

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], applicationId = args[1], stateDir = args[2];
        String input = args[3], countsTopic = args[4], windowedTopic = args[5];

        StreamsBuilder builder = new StreamsBuilder();
        KGroupedStream<String, String> byWord = builder
                .stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(line -> Arrays.asList(line.split(" ")))
                .groupBy((lineKey, word) -> word, Grouped.with("words-by-word", Serdes.String(), Serdes.String()));
        byWord.count(Materialized.as("counts"))
                .toStream()
                .to(countsTopic, Produced.with(Serdes.String(), Serdes.Long()));
        byWord.windowedBy(TimeWindows.ofSizeAndGrace(WINDOW, GRACE))
                .count(Materialized.as("windowed-counts"))
                .toStream((window, count) -> window.key() + "@" + window.window().start())
                .to(windowedTopic, Produced.with(Serdes.String(), Serdes.Long()));
        Topology topology = builder.build();
        System.err.println(topology.describe());

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        // Commit and purge the repartition topic (DeleteRecords) often, so a test of seconds
        // sees both; the defaults are 30 s.
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "200");
        // Two stream threads are two members of the group, sharing the tasks.
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "2");
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, "500");
        // A SIGKILLed instance's member is dropped after this, letting its restart be assigned
        // the tasks (the broker allows it with --group-min-session-timeout-ms).
        p.put(StreamsConfig.consumerPrefix("session.timeout.ms"), "3000");
        p.put(StreamsConfig.consumerPrefix("heartbeat.interval.ms"), "500");

        Map<String, Long> restored = new ConcurrentHashMap<>();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        KafkaStreams streams = new KafkaStreams(topology, p);
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            public void onRestoreStart(TopicPartition tp, String store, long start, long end) {}
            public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long count) {
                restored.merge(store, count, Long::sum);
            }
            public void onRestoreEnd(TopicPartition tp, String store, long total) {}
        });
        streams.setStateListener((now, before) -> System.err.println("state " + before + " -> " + now));
        streams.setUncaughtExceptionHandler(e -> {
            failure.set(e);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();

        // Stdin closing is the signal to stop; a failure of the application ends the wait too.
        Thread stdin = new Thread(() -> {
            try {
                InputStream in = System.in;
                while (in.read() != -1) { }
            } catch (Exception ignored) { }
        });
        stdin.setDaemon(true);
        stdin.start();
        while (stdin.isAlive() && failure.get() == null && streams.state() != KafkaStreams.State.ERROR
                && streams.state() != KafkaStreams.State.NOT_RUNNING) {
            stdin.join(100);
        }
        boolean closed = streams.close(CloseOptions.groupMembershipOperation(
                CloseOptions.GroupMembershipOperation.LEAVE_GROUP).withTimeout(Duration.ofSeconds(30)));
        if (failure.get() != null) {
            failure.get().printStackTrace();
            System.exit(1);
        }
        if (!closed) throw new AssertionError("streams did not close in 30 s, state " + streams.state());

        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("restored", new TreeMap<>(restored));
        summary.put("internal_topics", internalTopics(bootstrap, applicationId));
        System.out.println(toJson(summary));
    }

    /** The topics Streams created for the application: partitions, cleanup.policy and retention.ms of each. */
    static Map<String, Object> internalTopics(String bootstrap, String applicationId) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(p)) {
            List<String> names = admin.listTopics().names().get(30, TimeUnit.SECONDS).stream()
                    .filter(n -> n.startsWith(applicationId + "-")).sorted().collect(Collectors.toList());
            Map<String, TopicDescription> described =
                    admin.describeTopics(names).allTopicNames().get(30, TimeUnit.SECONDS);
            List<ConfigResource> resources = names.stream()
                    .map(n -> new ConfigResource(ConfigResource.Type.TOPIC, n)).collect(Collectors.toList());
            Map<ConfigResource, Config> configs = admin.describeConfigs(resources).all().get(30, TimeUnit.SECONDS);
            Map<String, Object> out = new TreeMap<>();
            for (String name : names) {
                Map<String, Object> topic = new LinkedHashMap<>();
                topic.put("partitions", described.get(name).partitions().size());
                Config config = configs.get(new ConfigResource(ConfigResource.Type.TOPIC, name));
                topic.put("cleanup.policy", config.get("cleanup.policy").value());
                topic.put("retention.ms", config.get("retention.ms").value());
                out.put(name.substring(applicationId.length() + 1), topic);
            }
            return out;
        }
    }

    static String toJson(Object o) {
        if (o instanceof Map<?, ?> m)
            return m.entrySet().stream().map(e -> "\"" + e.getKey() + "\":" + toJson(e.getValue()))
                    .collect(Collectors.joining(",", "{", "}"));
        if (o instanceof String s) return "\"" + s + "\"";
        return String.valueOf(o);
    }
}
