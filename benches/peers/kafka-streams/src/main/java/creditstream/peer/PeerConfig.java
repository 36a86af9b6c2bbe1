package creditstream.peer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.config.types.Password;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;

/**
 * The peer's Kafka Streams configuration, made from its flags, and the effective configuration as
 * the report prints it: the flags in force, every Streams value, the producer's and the main
 * consumer's resolved values, the JVM (arguments, heap, collectors, cores) and RocksDB.
 */
final class PeerConfig {
    private PeerConfig() {}

    static Properties properties(PeerFlags flags) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, flags.get("application-id"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, flags.get("bootstrap-servers"));
        p.put(StreamsConfig.STATE_DIR_CONFIG, flags.get("state-dir"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, flags.get("guarantee"));
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, flags.number("commit-interval-ms"));
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, flags.integer("threads"));
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, flags.number("cache-max-bytes"));
        p.put(StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG, LogAndContinueExceptionHandler.class);
        p.put(StreamsConfig.ROCKSDB_CONFIG_SETTER_CLASS_CONFIG, BoundedRocksDB.class);
        p.put(BoundedRocksDB.BLOCK_CACHE_BYTES, Long.toString(flags.number("block-cache-mb") << 20));
        p.put(BoundedRocksDB.WRITE_BUFFER_BYTES, Long.toString(flags.number("write-buffer-mb") << 20));
        p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), flags.integer("linger-ms"));
        p.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), flags.integer("batch-size"));
        p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");
        p.put(StreamsConfig.mainConsumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), flags.integer("max-poll-records"));
        return p;
    }

    /** A value as JSON can hold it: numbers, booleans and lists kept, classes by name, secrets hidden. */
    private static Object plain(Object value) {
        if (value == null || value instanceof Number || value instanceof Boolean || value instanceof String) {
            return value;
        }
        if (value instanceof Password) {
            return "[hidden]";
        }
        if (value instanceof Class<?> c) {
            return c.getName();
        }
        if (value instanceof List<?> list) {
            List<Object> out = new ArrayList<>();
            list.forEach(v -> out.add(plain(v)));
            return out;
        }
        return value.toString();
    }

    private static Map<String, Object> sorted(Map<String, ?> values) {
        Map<String, Object> out = new TreeMap<>();
        values.forEach((k, v) -> out.put(k, plain(v)));
        return out;
    }

    static Map<String, Object> effective(PeerFlags flags, Properties properties) {
        StreamsConfig streams = new StreamsConfig(properties);
        Map<String, Object> jvm = new LinkedHashMap<>();
        jvm.put("java_version", System.getProperty("java.version"));
        jvm.put("vm", System.getProperty("java.vm.name"));
        jvm.put("input_arguments", ManagementFactory.getRuntimeMXBean().getInputArguments());
        jvm.put("max_heap_bytes", Runtime.getRuntime().maxMemory());
        jvm.put("initial_heap_bytes", ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getInit());
        List<String> collectors = new ArrayList<>();
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            collectors.add(gc.getName());
        }
        jvm.put("garbage_collectors", collectors);
        jvm.put("available_processors", Runtime.getRuntime().availableProcessors());

        Map<String, Object> rocksdb = new LinkedHashMap<>();
        rocksdb.put("config_setter", BoundedRocksDB.class.getName());
        rocksdb.put("block_cache_bytes_shared_by_all_stores", flags.number("block-cache-mb") << 20);
        rocksdb.put("write_buffer_manager_bytes_charged_to_block_cache", flags.number("write-buffer-mb") << 20);
        rocksdb.put("cache_index_and_filter_blocks", true);
        rocksdb.put("high_priority_pool_ratio", BoundedRocksDB.HIGH_PRIORITY_RATIO);
        rocksdb.put("pin_l0_filter_and_index_blocks", true);
        rocksdb.put("bloom_filter_bits_per_key", BoundedRocksDB.BLOOM_BITS_PER_KEY);
        rocksdb.put("compression", "lz4");

        Map<String, Object> store = new LinkedHashMap<>();
        store.put("name", CreditCheckProcessor.STORE);
        store.put("persistent", true);
        store.put("logging", true);
        store.put("caching", true);

        Map<String, Object> out = new LinkedHashMap<>();
        out.put("kafka_streams_version", org.apache.kafka.common.utils.AppInfoParser.getVersion());
        out.put("flags", flags.all());
        out.put("jvm", jvm);
        out.put("store", store);
        out.put("rocksdb", rocksdb);
        out.put("streams", sorted(streams.values()));
        out.put("producer", sorted(streams.getProducerConfigs("peer-producer")));
        out.put("main_consumer", sorted(streams.getMainConsumerConfigs(flags.get("application-id"), "peer-consumer", 0)));
        return out;
    }

    /** Prints the effective configuration to stderr (one line) and to --config-out, if given. */
    static void report(PeerFlags flags, Properties properties) throws IOException {
        ObjectMapper json = new ObjectMapper();
        Map<String, Object> effective = effective(flags, properties);
        System.err.println("kafka-streams-peer: effective configuration " + json.writeValueAsString(effective));
        String out = flags.get("config-out");
        if (!out.isEmpty()) {
            Path path = Path.of(out);
            Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
            Files.writeString(tmp, json.enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(effective));
            Files.move(tmp, path, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        }
    }
}
