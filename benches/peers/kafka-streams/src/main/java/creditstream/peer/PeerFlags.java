package creditstream.peer;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The peer's command line: every flag, its default (none: required) and what it sets. The defaults
 * are the tuned settings the benchmark runs with; the benchmark passes most of them explicitly
 * anyway, so the report shows what was asked for beside what Kafka Streams made of it.
 *
 * <p>{@code --name value} or {@code --name=value}; an unknown, missing, repeated or empty flag, or a
 * bad number, prints the usage and exits 2.
 */
final class PeerFlags {
    /** One flag: its default ({@code null}: required, {@code ""}: optional, unset) and its doc. */
    private record Flag(String name, String defaultValue, boolean numeric, String doc) {}

    private static final Flag[] FLAGS = {
        new Flag("bootstrap-servers", null, false, "brokers, HOST:PORT[,...]"),
        new Flag("application-id", null, false, "application.id (the group and the changelog prefix)"),
        new Flag("state-dir", null, false, "state.dir"),
        new Flag("guarantee", null, false, "processing.guarantee: exactly_once_v2 or at_least_once"),
        new Flag("commit-interval-ms", null, true, "commit.interval.ms (the benchmark matches creditstream's cadence)"),
        new Flag("user-commands", null, false, "input topic of user commands"),
        new Flag("orders", null, false, "input topic of orders"),
        new Flag("decisions", null, false, "output topic of decisions"),
        new Flag("user-changes", null, false, "output topic of user changes"),
        new Flag("threads", "1", true, "num.stream.threads (the benchmark measures 1 against 2)"),
        new Flag("linger-ms", "50", true, "producer linger.ms"),
        new Flag("batch-size", "262144", true, "producer batch.size, bytes (256 KiB)"),
        new Flag("max-poll-records", "5000", true, "main consumer max.poll.records"),
        new Flag("cache-max-bytes", "67108864", true, "statestore.cache.max.bytes: the record cache, bytes (64 MiB)"),
        new Flag("block-cache-mb", "512", true, "RocksDB block cache shared by every store, MiB (creditstream's block_cache_mb)"),
        new Flag("write-buffer-mb", "64", true, "RocksDB memtables of every store, charged to the block cache, MiB (creditstream's write_buffer_mb)"),
        new Flag("stats-port", "0", true, "loopback port of GET /stats (commit counters as JSON); 0: none"),
        new Flag("config-out", "", false, "file the effective configuration is written to as JSON; unset: stderr only"),
    };

    private final Map<String, String> values;

    private PeerFlags(Map<String, String> values) {
        this.values = values;
    }

    String get(String name) {
        return values.get(name);
    }

    long number(String name) {
        return Long.parseLong(values.get(name));
    }

    int integer(String name) {
        return Math.toIntExact(number(name));
    }

    /** Every flag with the value in force (defaults included), in declaration order. */
    Map<String, String> all() {
        return new LinkedHashMap<>(values);
    }

    static String usage() {
        StringBuilder usage = new StringBuilder("usage: CreditCheckPeer [flags]\n");
        for (Flag f : FLAGS) {
            String dflt = f.defaultValue == null ? "required" : f.defaultValue.isEmpty() ? "optional" : "default " + f.defaultValue;
            usage.append(String.format("  --%-20s %s (%s)%n", f.name, f.doc, dflt));
        }
        return usage.toString();
    }

    static PeerFlags parse(String[] args) {
        Map<String, String> given = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (arg.equals("-h") || arg.equals("--help")) {
                System.out.print(usage());
                System.exit(0);
            }
            if (!arg.startsWith("--")) {
                fail("unexpected argument '" + arg + "'");
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
                fail("flag --" + name + " needs a value");
                return null;
            }
            if (find(name) == null) {
                fail("unknown flag --" + name);
            }
            if (value.isEmpty()) {
                fail("flag --" + name + " must not be empty");
            }
            if (given.put(name, value) != null) {
                fail("flag --" + name + " given twice");
            }
        }
        Map<String, String> values = new LinkedHashMap<>();
        for (Flag f : FLAGS) {
            String value = given.getOrDefault(f.name, f.defaultValue);
            if (value == null) {
                fail("missing flag --" + f.name);
            }
            if (f.numeric) {
                try {
                    if (Long.parseLong(value) < 0) {
                        fail("--" + f.name + " must not be negative");
                    }
                } catch (NumberFormatException e) {
                    fail("--" + f.name + " must be an integer, got '" + value + "'");
                }
            }
            values.put(f.name, value);
        }
        String guarantee = values.get("guarantee");
        if (!guarantee.equals("exactly_once_v2") && !guarantee.equals("at_least_once")) {
            fail("--guarantee must be exactly_once_v2 or at_least_once, got '" + guarantee + "'");
        }
        if (Long.parseLong(values.get("threads")) < 1) {
            fail("--threads must be at least 1");
        }
        if (Long.parseLong(values.get("stats-port")) > 65535) {
            fail("--stats-port must be a port number");
        }
        return new PeerFlags(values);
    }

    private static Flag find(String name) {
        for (Flag f : FLAGS) {
            if (f.name.equals(name)) {
                return f;
            }
        }
        return null;
    }

    private static void fail(String message) {
        System.err.println("kafka-streams-peer: " + message);
        System.err.print(usage());
        System.exit(2);
    }
}
