package creditstream.peer;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.state.Stores;

/**
 * Kafka Streams peer of creditstream's credit-check topology, for benchmarking: the same two
 * inputs (user-commands, orders), one processor over one persistent, changelogged RocksDB
 * store, and the same two outputs (decisions, user-changes), keyed by uid as creditstream keys
 * them. See {@link CreditCheckProcessor} for the decisions themselves.
 *
 * <p>Configured as a Kafka Streams expert would for a backlog benchmark ({@link PeerConfig}: a
 * larger producer batch and linger, 5000 records per poll, a 64 MiB record cache, RocksDB bounded
 * like creditstream's by {@link BoundedRocksDB}); every flag is listed by {@code --help}
 * ({@link PeerFlags}). The effective configuration goes to stderr and to {@code --config-out}
 * before the start, and {@code --stats-port} serves the commit counters ({@link StatsServer}).
 *
 * <p>Runs until SIGTERM; the shutdown hook closes Kafka Streams and exits 0.
 */
public final class CreditCheckPeer {
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(30);

    /** The status the shutdown hook exits with: 0 after SIGTERM, 1 after a fatal error. */
    private static volatile int exitStatus = 0;

    private CreditCheckPeer() {}

    public static void main(String[] args) {
        PeerFlags flags = PeerFlags.parse(args);
        Properties properties = PeerConfig.properties(flags);
        try {
            PeerConfig.report(flags, properties);
        } catch (IOException e) {
            System.err.println("kafka-streams-peer: cannot write the configuration: " + e);
            System.exit(2);
        }
        CreditCheckProcessor.Counters counters = new CreditCheckProcessor.Counters();
        Topology topology = topology(flags, counters);
        KafkaStreams streams = new KafkaStreams(topology, properties);

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
        HttpServer stats = null;
        int statsPort = flags.integer("stats-port");
        if (statsPort > 0) {
            try {
                stats = StatsServer.start(statsPort, streams, counters);
            } catch (IOException e) {
                System.err.println("kafka-streams-peer: cannot serve /stats on port " + statsPort + ": " + e);
                System.exit(2);
            }
        }
        HttpServer statsServer = stats;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            boolean closed = streams.close(CLOSE_TIMEOUT);
            if (statsServer != null) {
                statsServer.stop(0);
            }
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

    /**
     * The topology. The store is cached (statestore.cache.max.bytes): repeated writes of a key
     * between commits reach RocksDB and the changelog once; reads see the cache first.
     */
    static Topology topology(PeerFlags flags, CreditCheckProcessor.Counters counters) {
        String orders = flags.get("orders");
        Topology topology = new Topology();
        topology.addSource("user-commands-source", new StringDeserializer(), new ByteArrayDeserializer(),
                flags.get("user-commands"));
        topology.addSource("orders-source", new StringDeserializer(), new ByteArrayDeserializer(), orders);
        topology.addProcessor("credit-check", () -> new CreditCheckProcessor(orders, counters),
                "user-commands-source", "orders-source");
        topology.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(CreditCheckProcessor.STORE), Serdes.Bytes(), Serdes.ByteArray())
                .withCachingEnabled(),
                "credit-check");
        topology.addSink(CreditCheckProcessor.DECISIONS_SINK, flags.get("decisions"),
                new StringSerializer(), new ByteArraySerializer(), "credit-check");
        topology.addSink(CreditCheckProcessor.USER_CHANGES_SINK, flags.get("user-changes"),
                new StringSerializer(), new ByteArraySerializer(), "credit-check");
        return topology;
    }
}
