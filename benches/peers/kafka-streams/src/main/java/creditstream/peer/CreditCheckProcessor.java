package creditstream.peer;

import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.LongAdder;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The credit check of creditstream ({@code src/topology/credit_check.rs}, with the input
 * checks of {@code codec.rs} and the store layout of {@code state.rs}), as a Kafka Streams
 * processor: user commands keep per-uid credit state, orders are decided against it.
 *
 * <p>One instance per task, over that task's store. Store keys are {@code 'u'} + uid and
 * {@code 'o'} + order id (both big-endian longs); a user value is {@code version, present,
 * name, lname, credit_limit, credit_balance} in a small binary layout, an order value is the
 * status byte of its decision, which makes a second order with the same id a no-op.
 *
 * <p>Output JSON has the field names and order of creditstream's serde types. Records that
 * creditstream would dead-letter (no/invalid key, key differing from the uid, bad JSON, wrong
 * schema, amount <= 0) are skipped and counted; broadcast condition commands are not
 * implemented and are counted too. The wrong-partition check is left out: Kafka Streams reads
 * every record from the partition its producer put it on.
 */
final class CreditCheckProcessor implements Processor<String, byte[], String, byte[]> {
    static final String STORE = "credit-state";
    static final String DECISIONS_SINK = "decisions-sink";
    static final String USER_CHANGES_SINK = "user-changes-sink";

    static final String NOTE_COMPLETED = "Order placed successfully";
    static final String NOTE_DECLINED = "Insufficient Balance!! Order Declined";
    static final String NOTE_UNKNOWN_USER = "Unknown user!! Order Declined";
    static final int MAX_NAME_CHARS = 15;

    private static final byte STATE_FORMAT = 1;
    private static final byte STATUS_COMPLETED = 1;
    private static final byte STATUS_DECLINED = 2;

    private static final ObjectReader READER = new ObjectMapper().reader();
    private static final JsonFactory JSON = new JsonFactory();

    /** Process-wide counts, shared by every task's processor. */
    static final class Counters {
        final LongAdder decisions = new LongAdder();
        final LongAdder userChanges = new LongAdder();
        final LongAdder duplicateOrders = new LongAdder();
        final LongAdder skipped = new LongAdder();
        final LongAdder conditionCommands = new LongAdder();

        @Override
        public String toString() {
            return "decisions=" + decisions.sum() + " user_changes=" + userChanges.sum()
                    + " duplicate_orders=" + duplicateOrders.sum() + " skipped_records=" + skipped.sum()
                    + " skipped_condition_commands=" + conditionCommands.sum();
        }
    }

    /** A record creditstream would not process (its dead letters). */
    private static final class Skip extends Exception {
        static final Skip INSTANCE = new Skip();

        private Skip() {
            super(null, null, false, false);
        }
    }

    /** One user row, as on the wire. */
    private static final class User {
        long uid;
        String name;
        String lname;
        long creditLimit;
        long creditBalance;

        User copy() {
            User u = new User();
            u.uid = uid;
            u.name = name;
            u.lname = lname;
            u.creditLimit = creditLimit;
            u.creditBalance = creditBalance;
            return u;
        }
    }

    /** What the store holds for a uid: a version, and the row unless deleted. */
    private record UserState(long version, User user) {}

    private final String ordersTopic;
    private final Counters counters;
    private final ByteArrayOutputStream out = new ByteArrayOutputStream(256);
    private ProcessorContext<String, byte[]> context;
    private KeyValueStore<Bytes, byte[]> store;

    CreditCheckProcessor(String ordersTopic, Counters counters) {
        this.ordersTopic = ordersTopic;
        this.counters = counters;
    }

    @Override
    public void init(ProcessorContext<String, byte[]> context) {
        this.context = context;
        this.store = context.getStateStore(STORE);
    }

    @Override
    public void process(Record<String, byte[]> record) {
        String topic = context.recordMetadata().map(m -> m.topic()).orElse("");
        try {
            if (topic.equals(ordersTopic)) {
                processOrder(record);
            } else {
                processCommand(record);
            }
        } catch (Skip skip) {
            counters.skipped.increment();
        }
    }

    // ---- orders ----------------------------------------------------------------------

    private void processOrder(Record<String, byte[]> record) throws Skip {
        long keyUid = uidKey(record.key());
        JsonNode json = parse(record.value());
        long orderId = requireLong(json, "order_id");
        long uid = requireLong(json, "uid");
        long amount = requireLong(json, "amount");
        long timestampMs = requireLong(json, "timestamp_ms");
        if (amount <= 0 || uid != keyUid) {
            throw Skip.INSTANCE;
        }

        Bytes seenKey = key('o', orderId);
        if (store.get(seenKey) != null) {
            counters.duplicateOrders.increment();
            return;
        }
        UserState state = loadUser(uid);
        byte status;
        String note;
        Long balanceAfter;
        if (state != null && state.user != null) {
            User user = state.user;
            if (user.creditBalance >= amount) {
                user.creditBalance -= amount;
                long version = state.version + 1;
                saveUser(uid, version, user);
                emitUpserted(record, version, null, orderId, user);
                status = STATUS_COMPLETED;
                note = NOTE_COMPLETED;
            } else {
                status = STATUS_DECLINED;
                note = NOTE_DECLINED;
            }
            balanceAfter = user.creditBalance;
        } else {
            status = STATUS_DECLINED;
            note = NOTE_UNKNOWN_USER;
            balanceAfter = null;
        }
        store.put(seenKey, new byte[] {status});

        JsonGenerator g = begin();
        try {
            g.writeStartObject();
            g.writeNumberField("order_id", orderId);
            g.writeNumberField("uid", uid);
            g.writeNumberField("amount", amount);
            g.writeStringField("status", status == STATUS_COMPLETED ? "Completed" : "Declined");
            g.writeStringField("note", note);
            if (balanceAfter == null) {
                g.writeNullField("balance_after");
            } else {
                g.writeNumberField("balance_after", balanceAfter);
            }
            g.writeNumberField("order_timestamp_ms", timestampMs);
            g.writeNumberField("decided_at_ms", System.currentTimeMillis());
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        context.forward(record.withValue(end(g)), DECISIONS_SINK);
        counters.decisions.increment();
    }

    // ---- user commands -----------------------------------------------------------------

    private void processCommand(Record<String, byte[]> record) throws Skip {
        String rawKey = record.key();
        if (rawKey == null || rawKey.isEmpty()) {
            throw Skip.INSTANCE;
        }
        JsonNode json = parse(record.value());
        String type = requireText(json, "type");
        long commandId = requireLong(json, "command_id");
        switch (type) {
            case "create" -> {
                User user = parseUser(requireField(json, "user"));
                checkRoutedBy(rawKey, user.uid);
                create(record, commandId, user);
            }
            case "update" -> {
                JsonNode target = requireField(json, "target");
                JsonNode setNode = requireField(json, "set");
                if (!setNode.isArray()) {
                    throw Skip.INSTANCE;
                }
                List<Assignment> set = new ArrayList<>(setNode.size());
                for (JsonNode a : setNode) {
                    set.add(parseAssignment(a));
                }
                Long uid = targetUid(target);
                if (uid == null) {
                    counters.conditionCommands.increment();
                    return;
                }
                checkRoutedBy(rawKey, uid);
                update(record, commandId, uid, set);
            }
            case "delete" -> {
                Long uid = targetUid(requireField(json, "target"));
                if (uid == null) {
                    counters.conditionCommands.increment();
                    return;
                }
                checkRoutedBy(rawKey, uid);
                delete(record, commandId, uid);
            }
            default -> throw Skip.INSTANCE;
        }
    }

    private void create(Record<String, byte[]> record, long commandId, User user) {
        String invalid = validate(user);
        if (invalid != null) {
            emitRejected(record, user.uid, commandId, invalid);
            return;
        }
        UserState previous = loadUser(user.uid);
        if (previous != null && previous.user != null) {
            emitRejected(record, user.uid, commandId, "user " + user.uid + " already exists");
            return;
        }
        long version = (previous == null ? 0 : previous.version) + 1;
        saveUser(user.uid, version, user);
        emitUpserted(record, version, "created", 0, user);
    }

    private void update(Record<String, byte[]> record, long commandId, long uid, List<Assignment> set) {
        UserState state = loadUser(uid);
        if (state == null || state.user == null) {
            emitRejected(record, uid, commandId, "user " + uid + " does not exist");
            return;
        }
        User next = state.user.copy();
        String invalid = apply(next, set);
        if (invalid == null) {
            invalid = validate(next);
        }
        if (invalid != null) {
            emitRejected(record, uid, commandId, invalid);
            return;
        }
        long version = state.version + 1;
        saveUser(uid, version, next);
        emitUpserted(record, version, "updated", 0, next);
    }

    private void delete(Record<String, byte[]> record, long commandId, long uid) {
        UserState state = loadUser(uid);
        if (state == null || state.user == null) {
            emitRejected(record, uid, commandId, "user " + uid + " does not exist");
            return;
        }
        long version = state.version + 1;
        saveUser(uid, version, null);
        JsonGenerator g = begin();
        try {
            g.writeStartObject();
            g.writeStringField("kind", "deleted");
            g.writeNumberField("uid", uid);
            g.writeNumberField("version", version);
            g.writeNumberField("command_id", commandId);
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        emitUserChange(record, g);
    }

    /** {@code column = value} of an update; value is a Long or a String, as the JSON had it. */
    private record Assignment(String column, Object value) {}

    private static Assignment parseAssignment(JsonNode node) throws Skip {
        String column = requireText(node, "column");
        switch (column) {
            case "uid", "name", "lname", "credit_limit", "credit_balance" -> { }
            default -> throw Skip.INSTANCE;
        }
        JsonNode value = requireField(node, "value");
        if (value.isIntegralNumber() && value.canConvertToLong()) {
            return new Assignment(column, value.longValue());
        }
        if (value.isTextual()) {
            return new Assignment(column, value.textValue());
        }
        throw Skip.INSTANCE;
    }

    /** Applies {@code set} to {@code user}; returns why it cannot, or null. */
    private static String apply(User user, List<Assignment> set) {
        for (Assignment a : set) {
            boolean text = a.column.equals("name") || a.column.equals("lname");
            if (a.column.equals("uid")) {
                return "uid cannot be changed";
            }
            if (text != (a.value instanceof String)) {
                return a.column + " needs a " + (text ? "text" : "integer") + " value";
            }
            switch (a.column) {
                case "name" -> user.name = (String) a.value;
                case "lname" -> user.lname = (String) a.value;
                case "credit_limit" -> user.creditLimit = (Long) a.value;
                default -> user.creditBalance = (Long) a.value;
            }
        }
        return null;
    }

    /** The invariants of every stored user; returns the one that breaks, or null. */
    private static String validate(User user) {
        String[][] names = {{"name", user.name}, {"lname", user.lname}};
        for (String[] n : names) {
            int chars = n[1].codePointCount(0, n[1].length());
            if (chars == 0) {
                return n[0] + " must not be empty";
            }
            if (chars > MAX_NAME_CHARS) {
                return n[0] + " is " + chars + " characters long, at most " + MAX_NAME_CHARS + " allowed";
            }
        }
        if (user.creditLimit < 0) {
            return "credit_limit " + user.creditLimit + " is negative";
        }
        if (user.creditBalance < 0 || user.creditBalance > user.creditLimit) {
            return "credit_balance " + user.creditBalance + " must lie between 0 and credit_limit "
                    + user.creditLimit;
        }
        return null;
    }

    // ---- input parsing -------------------------------------------------------------------

    private static JsonNode parse(byte[] value) throws Skip {
        if (value == null) {
            throw Skip.INSTANCE;
        }
        try {
            JsonNode node = READER.readTree(value);
            if (node == null || !node.isObject()) {
                throw Skip.INSTANCE;
            }
            return node;
        } catch (IOException e) {
            throw Skip.INSTANCE;
        }
    }

    private static JsonNode requireField(JsonNode node, String field) throws Skip {
        JsonNode v = node.get(field);
        if (v == null) {
            throw Skip.INSTANCE;
        }
        return v;
    }

    private static long requireLong(JsonNode node, String field) throws Skip {
        JsonNode v = node.get(field);
        if (v == null || !v.isIntegralNumber() || !v.canConvertToLong()) {
            throw Skip.INSTANCE;
        }
        return v.longValue();
    }

    private static String requireText(JsonNode node, String field) throws Skip {
        JsonNode v = node.get(field);
        if (v == null || !v.isTextual()) {
            throw Skip.INSTANCE;
        }
        return v.textValue();
    }

    private static User parseUser(JsonNode node) throws Skip {
        if (!node.isObject()) {
            throw Skip.INSTANCE;
        }
        User u = new User();
        u.uid = requireLong(node, "uid");
        u.name = requireText(node, "name");
        u.lname = requireText(node, "lname");
        u.creditLimit = requireLong(node, "credit_limit");
        u.creditBalance = requireLong(node, "credit_balance");
        return u;
    }

    /** The uid of {@code {"uid":N}}, or null for {@code {"condition":[...]}}. */
    private static Long targetUid(JsonNode target) throws Skip {
        if (target.isObject() && target.size() == 1) {
            if (target.has("uid")) {
                return requireLong(target, "uid");
            }
            if (target.has("condition") && target.get("condition").isArray()) {
                return null;
            }
        }
        throw Skip.INSTANCE;
    }

    /** The uid a record key names; {@code *}, empty or non-numeric keys are skipped. */
    private static long uidKey(String key) throws Skip {
        if (key == null || key.isEmpty()) {
            throw Skip.INSTANCE;
        }
        try {
            return Long.parseLong(key);
        } catch (NumberFormatException e) {
            throw Skip.INSTANCE;
        }
    }

    private static void checkRoutedBy(String key, long uid) throws Skip {
        if (uidKey(key) != uid) {
            throw Skip.INSTANCE;
        }
    }

    // ---- store -------------------------------------------------------------------------

    private static Bytes key(char prefix, long id) {
        return Bytes.wrap(ByteBuffer.allocate(9).put((byte) prefix).putLong(id).array());
    }

    private UserState loadUser(long uid) {
        byte[] bytes = store.get(key('u', uid));
        if (bytes == null) {
            return null;
        }
        ByteBuffer buf = ByteBuffer.wrap(bytes);
        if (buf.get() != STATE_FORMAT) {
            throw new IllegalStateException("unknown state format for uid " + uid);
        }
        long version = buf.getLong();
        if (buf.get() == 0) {
            return new UserState(version, null);
        }
        User u = new User();
        u.uid = uid;
        u.name = getString(buf);
        u.lname = getString(buf);
        u.creditLimit = buf.getLong();
        u.creditBalance = buf.getLong();
        return new UserState(version, u);
    }

    /** Stores {@code user} (null after a delete) at {@code version}. */
    private void saveUser(long uid, long version, User user) {
        ByteBuffer buf;
        if (user == null) {
            buf = ByteBuffer.allocate(10).put(STATE_FORMAT).putLong(version).put((byte) 0);
        } else {
            byte[] name = user.name.getBytes(StandardCharsets.UTF_8);
            byte[] lname = user.lname.getBytes(StandardCharsets.UTF_8);
            buf = ByteBuffer.allocate(10 + 8 + name.length + lname.length + 16)
                    .put(STATE_FORMAT).putLong(version).put((byte) 1)
                    .putInt(name.length).put(name)
                    .putInt(lname.length).put(lname)
                    .putLong(user.creditLimit).putLong(user.creditBalance);
        }
        store.put(key('u', uid), buf.array());
    }

    private static String getString(ByteBuffer buf) {
        int len = buf.getInt();
        String s = new String(buf.array(), buf.position(), len, StandardCharsets.UTF_8);
        buf.position(buf.position() + len);
        return s;
    }

    // ---- output --------------------------------------------------------------------------

    private JsonGenerator begin() {
        out.reset();
        try {
            return JSON.createGenerator(out, JsonEncoding.UTF8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private byte[] end(JsonGenerator g) {
        try {
            g.close();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    private void emitUserChange(Record<String, byte[]> record, JsonGenerator g) {
        context.forward(record.withValue(end(g)), USER_CHANGES_SINK);
        counters.userChanges.increment();
    }

    /** An upsert caused by {@code cause}, or by order {@code orderId} when cause is null. */
    private void emitUpserted(Record<String, byte[]> record, long version, String cause, long orderId, User u) {
        JsonGenerator g = begin();
        try {
            g.writeStartObject();
            g.writeStringField("kind", "upserted");
            g.writeNumberField("version", version);
            if (cause != null) {
                g.writeStringField("cause", cause);
            } else {
                g.writeObjectFieldStart("cause");
                g.writeObjectFieldStart("order");
                g.writeNumberField("order_id", orderId);
                g.writeEndObject();
                g.writeEndObject();
            }
            g.writeObjectFieldStart("user");
            g.writeNumberField("uid", u.uid);
            g.writeStringField("name", u.name);
            g.writeStringField("lname", u.lname);
            g.writeNumberField("credit_limit", u.creditLimit);
            g.writeNumberField("credit_balance", u.creditBalance);
            g.writeEndObject();
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        emitUserChange(record, g);
    }

    private void emitRejected(Record<String, byte[]> record, long uid, long commandId, String reason) {
        JsonGenerator g = begin();
        try {
            g.writeStartObject();
            g.writeStringField("kind", "rejected");
            g.writeNumberField("uid", uid);
            g.writeNumberField("command_id", commandId);
            g.writeStringField("reason", reason);
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        emitUserChange(record, g);
    }
}
