package flinkjob.operators;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.java.tuple.Tuple;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.StreamReadConstraints;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.json.JsonReadFeature;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import java.io.IOException;

/**
 * The state key of a message whose key is one plain string field (``flink_job._keying``),
 * computed on the JVM in one pass over the message: no Python call, no SQL projection.
 *
 * <p>Input: the message tuple ({@code flink_job._wire.MSG_TYPE}). Output: {@code Row(stateKey,
 * message)}. A message this function cannot key for certain goes to the {@code fallback} side
 * output unchanged, where Python keys it ({@code flink_job._runtime.FallbackKey}).
 *
 * <p>The rule that keeps this exact: the keyed operator re-checks every key against the one
 * Python validates (a difference is a KeyMismatch dead letter), so for every message that
 * pydantic accepts, the key here must be exactly Python's: {@code state_key} of the string
 * at the path, the last occurrence of a member winning (as pydantic reads duplicates), or the
 * default's key when a member along the path is absent. A message pydantic refuses is a dead
 * letter whatever its key; only for those (no value, an empty one, one over the size limit, a
 * document that is not an object, a member on the path that is null or not a string or not an
 * object, a required member that is absent, a key that is not valid Unicode) is the key
 * {@code unkeyable}. Whatever Jackson cannot read (invalid JSON or UTF-8, nesting deeper than
 * its limit) falls back to Python, which decides. NaN, Infinity and numbers of any length
 * (which pydantic reads and Jackson refuses by default) are read: they are skipped, never a key.
 */
public class JsonStateKey extends ProcessFunction<Tuple, Row> {

    private static final long serialVersionUID = 1L;

    // Fields of the message tuple (flink_job._wire.MSG_TYPE).
    private static final int MSG_VALUE = 1;
    private static final int MSG_ABSENT = 5;
    private static final int ABSENT_VALUE = 2;
    /** The escape prefix of flink_job._core.state_key. */
    private static final char ESCAPE = '\u0001';

    private final String[] path;
    /** Per depth: the state key when that member is absent, or null (then unkeyable). */
    private final String[] defaults;
    private final int limit;
    private final String unkeyable;
    private final OutputTag<Tuple> fallback;

    private transient JsonFactory factory;

    /**
     * @param spec JSON: {@code {"path": [names], "defaults": [key or null per name], "limit":
     *     max message bytes, "unkeyable": the UNKEYABLE state key}}
     * @param fallback where messages go that Python must key
     */
    public JsonStateKey(String spec, OutputTag<Tuple> fallback) throws IOException {
        JsonNode s = new ObjectMapper().readTree(spec);
        int n = s.get("path").size();
        if (n == 0 || s.get("defaults").size() != n) {
            throw new IllegalArgumentException("key path and defaults must be non-empty and match");
        }
        path = new String[n];
        defaults = new String[n];
        for (int i = 0; i < n; i++) {
            path[i] = s.get("path").get(i).asText();
            JsonNode d = s.get("defaults").get(i);
            defaults[i] = d.isNull() ? null : d.asText();
        }
        limit = s.get("limit").asInt();
        unkeyable = s.get("unkeyable").asText();
        this.fallback = fallback;
    }

    @Override
    public void open(OpenContext context) {
        factory =
                JsonFactory.builder()
                        .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
                        .streamReadConstraints(
                                StreamReadConstraints.builder()
                                        .maxNumberLength(Integer.MAX_VALUE)
                                        .build())
                        .build();
    }

    @Override
    public void processElement(Tuple message, Context ctx, Collector<Row> out) {
        String key = key(message);
        if (key == null) {
            ctx.output(fallback, message);
        } else {
            out.collect(Row.of(key, message));
        }
    }

    /** The message's state key, or null when Python must key it. */
    public String key(Tuple message) {
        byte[] v = (byte[]) message.getField(MSG_VALUE);
        int absent = (Integer) message.getField(MSG_ABSENT);
        if ((absent & ABSENT_VALUE) != 0 || v == null || v.length == 0 || v.length > limit) {
            return unkeyable; // EmptyMessage / MessageTooLarge in Python
        }
        try (JsonParser p = factory.createParser(v)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return unkeyable; // not an object: pydantic refuses it
            }
            // Trailing content after the object makes pydantic refuse the message: any key will do.
            return object(p, 0);
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    /** The key from the object the parser is at (just after its START_OBJECT), at ``depth``. */
    private String object(JsonParser p, int depth) throws IOException {
        String name = path[depth];
        boolean last = depth == path.length - 1;
        String found = null;
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            boolean match = name.equals(p.currentName());
            JsonToken t = p.nextToken();
            if (!match) {
                p.skipChildren();
            } else if (last) {
                if (t == JsonToken.VALUE_STRING) {
                    found = checked(p.getText());
                } else {
                    p.skipChildren();
                    found = unkeyable; // null or not a string: pydantic refuses it
                }
            } else if (t == JsonToken.START_OBJECT) {
                found = object(p, depth + 1); // reads up to its END_OBJECT
            } else {
                p.skipChildren();
                found = unkeyable; // null or not an object along the path
            }
        }
        if (p.currentToken() != JsonToken.END_OBJECT) {
            throw new IOException("unexpected token " + p.currentToken());
        }
        if (found == null) { // absent: the default's key
            return defaults[depth] == null ? unkeyable : defaults[depth];
        }
        return found;
    }

    /** {@code flink_job._core.state_key} of a string; unkeyable for a lone surrogate. */
    private String checked(String s) {
        for (int i = 0, n = s.length(); i < n; i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c)) {
                if (i + 1 < n && Character.isLowSurrogate(s.charAt(i + 1))) {
                    i++;
                } else {
                    return unkeyable;
                }
            } else if (Character.isLowSurrogate(c)) {
                return unkeyable;
            }
        }
        if (!s.isEmpty()) {
            char c = s.charAt(0);
            if (c == '\ufeff' || c == '\ufffe' || c == ESCAPE) {
                return ESCAPE + s;
            }
        }
        return s;
    }
}
