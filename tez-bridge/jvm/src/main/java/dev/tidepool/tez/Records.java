package dev.tidepool.tez;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.NullNode;
import dev.tidepool.tez.json.Json;
import org.apache.hadoop.io.Text;

import java.io.IOException;

/**
 * Input records: one JSON object per line,
 * {@code {"key": <IndexedDB key>, "doc": "<hex>", "heads": ["<hex>", ...], "value": <value>}}.
 */
final class Records {
  private Records() {
  }

  /** True for lines that hold only whitespace; they are not records and are skipped. */
  static boolean isBlank(Text line) {
    byte[] b = line.getBytes();
    for (int i = 0; i < line.getLength(); i++) {
      if (b[i] != ' ' && b[i] != '\t' && b[i] != '\r' && b[i] != '\n') {
        return false;
      }
    }
    return true;
  }

  /**
   * Parses one input line. Anything that is not a JSON object is malformed input, which fails the
   * task (and so the DAG): a snapshot must never be silently truncated.
   */
  static JsonNode parse(Text line, Object position) throws IOException {
    JsonNode rec;
    try {
      rec = Json.parse(line.getBytes(), 0, line.getLength());
    } catch (IOException e) {
      throw new IOException("malformed input record at byte offset " + position + ": "
          + e.getMessage().split("\n", 2)[0] + " (line starts with: " + excerpt(line) + ")");
    }
    if (!rec.isObject()) {
      throw new IOException("malformed input record at byte offset " + position
          + ": expected a JSON object, got " + rec.getNodeType() + " (line starts with: "
          + excerpt(line) + ")");
    }
    return rec;
  }

  static JsonNode value(JsonNode rec) {
    JsonNode v = rec.get("value");
    return v == null ? NullNode.instance : v;
  }

  private static String excerpt(Text line) {
    String s = line.toString();
    return s.length() > 80 ? s.substring(0, 80) + "..." : s;
  }
}
