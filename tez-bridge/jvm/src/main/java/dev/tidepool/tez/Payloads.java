package dev.tidepool.tez;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.tidepool.tez.json.Json;
import org.apache.tez.dag.api.UserPayload;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

/**
 * Processor payloads are UTF-8 text (JSON). A first vertex gets its plan together with the DAG's
 * filter: {@code {"where": <source or null>, "plan": "<plan JSON>"}}.
 */
final class Payloads {
  private Payloads() {
  }

  static UserPayload of(String text) {
    return UserPayload.create(ByteBuffer.wrap(text.getBytes(StandardCharsets.UTF_8)));
  }

  static String text(UserPayload payload) {
    if (payload == null || !payload.hasPayload()) {
      return "";
    }
    ByteBuffer b = payload.getPayload().duplicate();
    byte[] bytes = new byte[b.remaining()];
    b.get(bytes);
    return new String(bytes, StandardCharsets.UTF_8);
  }

  /** A first vertex's payload: its plan (JSON text) and the DAG's filter. */
  static UserPayload filtered(Filter where, String plan) {
    ObjectNode o = Json.NODES.objectNode();
    o.put("where", where.source());
    o.put("plan", plan);
    return of(Json.write(o));
  }

  /** The two halves of a {@link #filtered} payload. */
  record Filtered(Filter where, String plan) {
  }

  static Filtered filtered(UserPayload payload) throws IOException {
    JsonNode o = Json.parse(text(payload));
    JsonNode where = o.get("where");
    try {
      return new Filtered(Filter.parse(where == null || where.isNull() ? null : where.textValue()),
          o.get("plan").textValue());
    } catch (IllegalArgumentException e) {
      throw new IOException(e.getMessage(), e);
    }
  }
}
