package dev.tidepool.tez.agg;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import dev.tidepool.tez.json.Json;

import java.io.IOException;
import java.math.BigDecimal;

/**
 * Partial aggregates of a set of records: the record count, and per numeric field the number of
 * numeric values, their exact sum, minimum and maximum. Partials merge associatively and
 * commutatively, so the shuffle may deliver them in any grouping and order.
 *
 * <p>Wire form (one shuffle value): {@code [count, [n, "sum", "min", "max"], ...]} with decimals
 * as strings so that no precision is lost between vertices.
 */
public final class Partial {
  long count;
  final FieldStats[] stats;

  Partial(int fields) {
    stats = new FieldStats[fields];
    for (int i = 0; i < fields; i++) {
      stats[i] = new FieldStats();
    }
  }

  public long count() {
    return count;
  }

  /** Folds {@code other} into this partial. */
  public Partial merge(Partial other) {
    if (other.stats.length != stats.length) {
      throw new IllegalArgumentException("partials of different plans");
    }
    count += other.count;
    for (int i = 0; i < stats.length; i++) {
      stats[i].merge(other.stats[i]);
    }
    return this;
  }

  public String encode() {
    ArrayNode a = Json.NODES.arrayNode(1 + stats.length);
    a.add(count);
    for (FieldStats s : stats) {
      ArrayNode f = a.addArray();
      f.add(s.n);
      if (s.n > 0) {
        f.add(s.sum.toString()).add(s.min.toString()).add(s.max.toString());
      }
    }
    return Json.write(a);
  }

  public static Partial decode(String text, int fields) throws IOException {
    JsonNode a = Json.parse(text);
    if (!a.isArray() || a.size() != fields + 1 || !a.get(0).canConvertToLong()) {
      throw new IOException("malformed partial aggregate: " + text);
    }
    Partial p = new Partial(fields);
    p.count = a.get(0).longValue();
    try {
      for (int i = 0; i < fields; i++) {
        JsonNode f = a.get(i + 1);
        FieldStats s = p.stats[i];
        s.n = f.get(0).longValue();
        if (s.n > 0) {
          s.sum = new BigDecimal(f.get(1).textValue());
          s.min = new BigDecimal(f.get(2).textValue());
          s.max = new BigDecimal(f.get(3).textValue());
        }
      }
    } catch (RuntimeException e) {
      throw new IOException("malformed partial aggregate: " + text, e);
    }
    return p;
  }

  /** Statistics of the numeric values of one field. */
  static final class FieldStats {
    long n;
    BigDecimal sum = BigDecimal.ZERO;
    BigDecimal min;
    BigDecimal max;

    void add(BigDecimal v) {
      n++;
      sum = sum.add(v);
      min = min == null || v.compareTo(min) < 0 ? v : min;
      max = max == null || v.compareTo(max) > 0 ? v : max;
    }

    void merge(FieldStats o) {
      if (o.n == 0) {
        return;
      }
      n += o.n;
      sum = sum.add(o.sum);
      min = min == null || o.min.compareTo(min) < 0 ? o.min : min;
      max = max == null || o.max.compareTo(max) > 0 ? o.max : max;
    }
  }
}
