package dev.tidepool.tez.agg;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.tidepool.tez.json.Json;

import java.io.IOException;
import java.math.BigDecimal;
import java.math.MathContext;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What the aggregate DAG computes: group-by fields and aggregates. Shipped to the processors as
 * the user payload (JSON), and owning the pure logic of extracting groups, building partial
 * aggregates and rendering results.
 */
public final class AggregatePlan {
  private final List<String> groupBy;
  private final List<List<String>> groupPaths;
  private final List<AggSpec> aggs;
  /** Distinct fields that sum/min/max/avg read, in first-use order. */
  private final List<String> numericFields;
  private final List<List<String>> numericPaths;
  private final Map<String, Integer> numericIndex;

  public AggregatePlan(List<String> groupBy, List<AggSpec> aggs) {
    this.groupBy = List.copyOf(groupBy);
    this.aggs = List.copyOf(aggs);
    List<List<String>> gp = new ArrayList<>();
    for (String g : this.groupBy) {
      gp.add(Json.splitPath(g));
    }
    this.groupPaths = Collections.unmodifiableList(gp);
    Map<String, Integer> idx = new LinkedHashMap<>();
    for (AggSpec a : this.aggs) {
      if (a.field() != null) {
        idx.putIfAbsent(a.field(), idx.size());
      }
    }
    this.numericIndex = Collections.unmodifiableMap(idx);
    this.numericFields = List.copyOf(idx.keySet());
    List<List<String>> np = new ArrayList<>();
    for (String f : numericFields) {
      np.add(Json.splitPath(f));
    }
    this.numericPaths = Collections.unmodifiableList(np);
  }

  public List<String> groupBy() {
    return groupBy;
  }

  public List<AggSpec> aggs() {
    return aggs;
  }

  public List<String> numericFields() {
    return numericFields;
  }

  // ---- payload -------------------------------------------------------------------------------

  public String toJson() {
    ObjectNode o = Json.NODES.objectNode();
    ArrayNode g = o.putArray("groupBy");
    groupBy.forEach(g::add);
    ArrayNode a = o.putArray("aggs");
    aggs.forEach(s -> a.add(s.toString()));
    return Json.write(o);
  }

  public static AggregatePlan fromJson(String json) throws IOException {
    JsonNode o = Json.parse(json);
    List<String> g = new ArrayList<>();
    o.get("groupBy").forEach(n -> g.add(n.textValue()));
    List<AggSpec> a = new ArrayList<>();
    o.get("aggs").forEach(n -> a.add(AggSpec.parse(n.textValue())));
    return new AggregatePlan(g, a);
  }

  // ---- map side ------------------------------------------------------------------------------

  /**
   * The group of a record value as a canonical JSON array string (missing field = null), or null
   * if the value is not an object and the record must be skipped.
   */
  public String groupKey(JsonNode value) {
    if (value == null || !value.isObject()) {
      return null;
    }
    ArrayNode key = Json.NODES.arrayNode(groupPaths.size());
    for (List<String> path : groupPaths) {
      key.add(Json.path(value, path));
    }
    return Json.canonical(key);
  }

  /** The partial aggregate of one record value (which must be an object). */
  public Partial partialOf(JsonNode value) {
    Partial p = new Partial(numericFields.size());
    p.count = 1;
    for (int i = 0; i < numericPaths.size(); i++) {
      BigDecimal d = Json.decimal(Json.path(value, numericPaths.get(i)));
      if (d != null) {
        p.stats[i].add(d);
      }
    }
    return p;
  }

  public Partial emptyPartial() {
    return new Partial(numericFields.size());
  }

  // ---- reduce side ---------------------------------------------------------------------------

  /**
   * The output line object for one group:
   * {@code {"key": [g...], "value": {"f1": g1, ..., "count": N, "sum_amount": S, ...}}}.
   */
  public ObjectNode result(String canonicalKey, Partial merged) throws IOException {
    JsonNode key = Json.parse(canonicalKey);
    if (!key.isArray() || key.size() != groupBy.size()) {
      throw new IOException("group key " + canonicalKey + " does not match the group-by fields "
          + groupBy);
    }
    ObjectNode out = Json.NODES.objectNode();
    out.set("key", key);
    ObjectNode value = out.putObject("value");
    for (int i = 0; i < groupBy.size(); i++) {
      value.set(groupBy.get(i), key.get(i));
    }
    for (AggSpec a : aggs) {
      value.set(a.outputName(), aggregate(a, merged));
    }
    return out;
  }

  private JsonNode aggregate(AggSpec a, Partial p) {
    if (a.kind() == AggSpec.Kind.COUNT) {
      return Json.NODES.numberNode(p.count);
    }
    Partial.FieldStats s = p.stats[numericIndex.get(a.field())];
    if (s.n == 0) {
      return Json.NODES.nullNode();
    }
    switch (a.kind()) {
      case SUM:
        return Json.number(s.sum);
      case MIN:
        return Json.number(s.min);
      case MAX:
        return Json.number(s.max);
      case AVG:
        return Json.number(s.sum.divide(BigDecimal.valueOf(s.n), MathContext.DECIMAL128));
      default:
        throw new IllegalStateException(a.toString());
    }
  }
}
