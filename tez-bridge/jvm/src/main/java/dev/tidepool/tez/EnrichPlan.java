package dev.tidepool.tez;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.tidepool.tez.expr.Expr;
import dev.tidepool.tez.expr.ExprParseException;
import dev.tidepool.tez.json.Json;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/** The computed fields of the enrich DAG: an ordered list of {@code name=EXPR}. */
public final class EnrichPlan {
  private final List<String> names;
  private final List<Expr> exprs;

  private EnrichPlan(List<String> names, List<Expr> exprs) {
    this.names = List.copyOf(names);
    this.exprs = List.copyOf(exprs);
  }

  /**
   * Parses {@code name=EXPR} specs; the expression is everything after the first '='.
   *
   * @throws IllegalArgumentException with a message naming the offending spec
   */
  public static EnrichPlan parse(List<String> specs) {
    List<String> names = new ArrayList<>();
    List<Expr> exprs = new ArrayList<>();
    Set<String> seen = new LinkedHashSet<>();
    for (String spec : specs) {
      int eq = spec.indexOf('=');
      if (eq <= 0) {
        throw new IllegalArgumentException("--field '" + spec + "': expected name=EXPR");
      }
      String name = spec.substring(0, eq).trim();
      if (name.isEmpty()) {
        throw new IllegalArgumentException("--field '" + spec + "': empty field name");
      }
      if (!seen.add(name)) {
        throw new IllegalArgumentException("--field '" + spec + "': field '" + name
            + "' given twice");
      }
      String src = spec.substring(eq + 1);
      try {
        exprs.add(Expr.compile(src));
      } catch (ExprParseException e) {
        throw new IllegalArgumentException("--field " + name + ": cannot parse expression '"
            + src + "': " + e.getMessage());
      }
      names.add(name);
    }
    if (names.isEmpty()) {
      throw new IllegalArgumentException("enrich needs at least one --field name=EXPR");
    }
    return new EnrichPlan(names, exprs);
  }

  public String toJson() {
    ArrayNode a = Json.NODES.arrayNode();
    for (int i = 0; i < names.size(); i++) {
      a.addArray().add(names.get(i)).add(exprs.get(i).source());
    }
    return Json.write(a);
  }

  public static EnrichPlan fromJson(String json) throws IOException {
    List<String> specs = new ArrayList<>();
    for (JsonNode pair : Json.parse(json)) {
      specs.add(pair.get(0).textValue() + "=" + pair.get(1).textValue());
    }
    try {
      return parse(specs);
    } catch (IllegalArgumentException e) {
      throw new IOException(e.getMessage(), e);
    }
  }

  /** {@code {"key": <key>, "doc": <doc>, "fields": {name: result, ...}}} for one input record. */
  public ObjectNode apply(JsonNode record) {
    JsonNode value = Records.value(record);
    ObjectNode out = Json.NODES.objectNode();
    JsonNode key = record.get("key");
    JsonNode doc = record.get("doc");
    out.set("key", key == null ? NullNode.instance : key);
    out.set("doc", doc == null ? NullNode.instance : doc);
    ObjectNode fields = out.putObject("fields");
    for (int i = 0; i < names.size(); i++) {
      fields.set(names.get(i), Json.normalize(exprs.get(i).eval(value)));
    }
    return out;
  }
}
