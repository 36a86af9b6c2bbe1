package creditstream.peer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.streams.KafkaStreams;

/**
 * {@code GET /stats} on the loopback: the commits of all stream threads so far (the sum of their
 * {@code commit-total}) and the processor's counters, as JSON. The benchmark reads it at the start
 * and the end of a throughput window to get the commit cadence the peer achieved.
 */
final class StatsServer {
    private static final String THREAD_GROUP = "stream-thread-metrics";

    private StatsServer() {}

    static double threadSum(KafkaStreams streams, String metric) {
        double sum = 0;
        for (Map.Entry<MetricName, ? extends Metric> e : streams.metrics().entrySet()) {
            MetricName name = e.getKey();
            if (name.group().equals(THREAD_GROUP) && name.name().equals(metric)
                    && e.getValue().metricValue() instanceof Number n) {
                sum += n.doubleValue();
            }
        }
        return sum;
    }

    static HttpServer start(int port, KafkaStreams streams, CreditCheckProcessor.Counters counters)
            throws IOException {
        HttpServer server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 16);
        ObjectMapper json = new ObjectMapper();
        server.createContext("/stats", exchange -> {
            Map<String, Object> stats = new LinkedHashMap<>();
            stats.put("state", streams.state().toString());
            stats.put("commit_total", threadSum(streams, "commit-total"));
            stats.put("process_total", threadSum(streams, "process-total"));
            stats.put("decisions", counters.decisions.sum());
            stats.put("user_changes", counters.userChanges.sum());
            byte[] body = json.writeValueAsString(stats).getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", "application/json");
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
        return server;
    }
}
