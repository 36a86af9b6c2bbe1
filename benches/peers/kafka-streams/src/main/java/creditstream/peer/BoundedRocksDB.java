package creditstream.peer;

import java.util.Map;
import org.apache.kafka.streams.state.RocksDBConfigSetter;
import org.rocksdb.BlockBasedTableConfig;
import org.rocksdb.BloomFilter;
import org.rocksdb.Cache;
import org.rocksdb.CompressionType;
import org.rocksdb.LRUCache;
import org.rocksdb.Options;
import org.rocksdb.WriteBufferManager;

/**
 * RocksDB sized like creditstream's stores: one block cache for every store of the process
 * (block-cache-mb), the memtables of every store bounded by one write buffer manager
 * (write-buffer-mb) that charges them to that cache, index and filter blocks held in the cache
 * (high priority, L0 pinned), a 10-bit Bloom filter and lz4.
 *
 * <p>Kafka Streams creates one setter per store; the cache, the manager and the filter are shared
 * by all of them and live as long as the JVM, so {@link #close} frees nothing.
 */
public final class BoundedRocksDB implements RocksDBConfigSetter {
    /** Keys of the two sizes in the Streams configuration (read in {@link #setConfig}). */
    static final String BLOCK_CACHE_BYTES = "creditstream.peer.rocksdb.block.cache.bytes";
    static final String WRITE_BUFFER_BYTES = "creditstream.peer.rocksdb.write.buffer.bytes";
    static final int BLOOM_BITS_PER_KEY = 10;
    /** Share of the block cache kept for index and filter blocks. */
    static final double HIGH_PRIORITY_RATIO = 0.1;

    private static Cache cache;
    private static WriteBufferManager writeBuffers;
    private static BloomFilter filter;

    private static synchronized void ensureShared(long cacheBytes, long writeBufferBytes) {
        if (cache == null) {
            cache = new LRUCache(cacheBytes, -1, false, HIGH_PRIORITY_RATIO);
            writeBuffers = new WriteBufferManager(writeBufferBytes, cache);
            filter = new BloomFilter(BLOOM_BITS_PER_KEY, false);
        }
    }

    private static long size(Map<String, Object> configs, String key) {
        Object value = configs.get(key);
        if (value == null) {
            throw new IllegalStateException(key + " is not set");
        }
        return Long.parseLong(value.toString());
    }

    @Override
    public void setConfig(String storeName, Options options, Map<String, Object> configs) {
        ensureShared(size(configs, BLOCK_CACHE_BYTES), size(configs, WRITE_BUFFER_BYTES));
        BlockBasedTableConfig table = (BlockBasedTableConfig) options.tableFormatConfig();
        table.setBlockCache(cache);
        table.setCacheIndexAndFilterBlocks(true);
        table.setCacheIndexAndFilterBlocksWithHighPriority(true);
        table.setPinL0FilterAndIndexBlocksInCache(true);
        table.setFilterPolicy(filter);
        options.setTableFormatConfig(table);
        options.setWriteBufferManager(writeBuffers);
        options.setCompressionType(CompressionType.LZ4_COMPRESSION);
    }

    @Override
    public void close(String storeName, Options options) {
        // The shared cache, manager and filter outlive every store (see the class comment).
    }
}
