package creditstream.peer;

import java.time.Duration;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.state.Stores;

/**
 * Kafka Streams peer of creditstream's credit-check topology, for benchmarking: the same two
 * inputs (user-commands, orders), one processor over one persistent, changelogged RocksDB
 * store, and the same two outputs (decisions, user-changes), keyed by uid as creditstream keys
 * them. See {@link CreditCheckProcessor} for the decisions themselves.
 *
 * <p>Runs until SIGTERM; the shutdown hook closes Kafka Streams and exits 0.
 */
public final class CreditCheckPeer {
    private static final String USAGE = "usage: CreditCheckPeer --bootstrap-servers HOST:PORT --application-id ID"
            + " --state-dir DIR --guarantee exactly_once_v2|at_least_once --commit-interval-ms MS"
            + " --user-commands TOPIC --orders TOPIC --decisions TOPIC --user-changes TOPIC";
    private static final String[] FLAGS = {
        "bootstrap-servers", "application-id", "state-dir", "guarantee", "commit-interval-ms",
        "user-commands", "orders", "decisions", "user-changes",
    };
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(30);

    /** The status the shutdown hook exits with: 0 after SIGTERM, 1 after a fatal error. */
    private static volatile int exitStatus = 0;

    private CreditCheckPeer() {}

    public static void main(String[] args) {
        Map<String, String> flags = parseFlags(args);
        CreditCheckProcessor.Counters counters = new CreditCheckProcessor.Counters();
        Topology topology = topology(flags, counters);
        KafkaStreams streams = new KafkaStreams(topology, config(flags));

        CountDownLatch failed = new CountDownLatch(1);
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("kafka-streams-peer: stream thread failed: " + e);
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.ERROR) {
                failed.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            boolean closed = streams.close(CLOSE_TIMEOUT);
            System.err.println("kafka-streams-peer: " + (closed ? "closed" : "close timed out") + ": " + counters);
            System.err.flush();
            // A SIGTERM'd JVM would otherwise exit 143; a clean stop is a success.
            Runtime.getRuntime().halt(exitStatus);
        }, "peer-shutdown"));

        streams.start();
        try {
            failed.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        System.err.println("kafka-streams-peer: Kafka Streams went to ERROR");
        exitStatus = 1;
        System.exit(1);
    }

    static Topology topology(Map<String, String> flags, CreditCheckProcessor.Counters counters) {
        String orders = flags.get("orders");
        Topology topology = new Topology();
        topology.addSource("user-commands-source", new StringDeserializer(), new ByteArrayDeserializer(),
                flags.get("user-commands"));
        topology.addSource("orders-source", new StringDeserializer(), new ByteArrayDeserializer(), orders);
        topology.addProcessor("credit-check", () -> new CreditCheckProcessor(orders, counters),
                "user-commands-source", "orders-source");
        topology.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(CreditCheckProcessor.STORE), Serdes.Bytes(), Serdes.ByteArray()),
                "credit-check");
        topology.addSink(CreditCheckProcessor.DECISIONS_SINK, flags.get("decisions"),
                new StringSerializer(), new ByteArraySerializer(), "credit-check");
        topology.addSink(CreditCheckProcessor.USER_CHANGES_SINK, flags.get("user-changes"),
                new StringSerializer(), new ByteArraySerializer(), "credit-check");
        return topology;
    }

    static Properties config(Map<String, String> flags) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, flags.get("application-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, flags.get("bootstrap-servers"));
        p.put(StreamsConfig.STATE_DIR_CONFIG, flags.get("state-dir"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, flags.get("guarantee"));
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, flags.get("commit-interval-ms"));
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG, LogAndContinueExceptionHandler.class);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");
        return p;
    }

    /** {@code --name value} or {@code --name=value} for every flag; anything else exits 2. */
    static Map<String, String> parseFlags(String[] args) {
        Map<String, String> flags = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (arg.equals("-h") || arg.equals("--help")) {
                System.out.println(USAGE);
                System.exit(0);
            }
            if (!arg.startsWith("--")) {
                usageError("unexpected argument '" + arg + "'");
            }
            String name = arg.substring(2);
            String value;
            int eq = name.indexOf('=');
            if (eq >= 0) {
                value = name.substring(eq + 1);
                name = name.substring(0, eq);
            } else if (i + 1 < args.length) {
                value = args[++i];
            } else {
                usageError("flag --" + name + " needs a value");
                return flags;
            }
            if (!Arrays.asList(FLAGS).contains(name)) {
                usageError("unknown flag --" + name);
            }
            if (value.isEmpty()) {
                usageError("flag --" + name + " must not be empty");
            }
            if (flags.put(name, value) != null) {
                usageError("flag --" + name + " given twice");
            }
        }
        for (String name : FLAGS) {
            if (!flags.containsKey(name)) {
                usageError("missing flag --" + name);
            }
        }
        String guarantee = flags.get("guarantee");
        if (!guarantee.equals(StreamsConfig.EXACTLY_ONCE_V2) && !guarantee.equals(StreamsConfig.AT_LEAST_ONCE)) {
            usageError("--guarantee must be exactly_once_v2 or at_least_once, got '" + guarantee + "'");
        }
        try {
            if (Long.parseLong(flags.get("commit-interval-ms")) < 0) {
                usageError("--commit-interval-ms must not be negative");
            }
        } catch (NumberFormatException e) {
            usageError("--commit-interval-ms must be an integer, got '" + flags.get("commit-interval-ms") + "'");
        }
        return flags;
    }

    private static void usageError(String message) {
        System.err.println("kafka-streams-peer: " + message);
        System.err.println(USAGE);
        System.exit(2);
    }
}
