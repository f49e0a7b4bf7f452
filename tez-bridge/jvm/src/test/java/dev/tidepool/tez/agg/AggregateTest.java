package dev.tidepool.tez.agg;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.fasterxml.jackson.databind.JsonNode;
import dev.tidepool.tez.json.Json;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

class AggregateTest {
  private static final List<AggSpec> ALL = List.of(AggSpec.parse("count"),
      AggSpec.parse("sum:amount"), AggSpec.parse("min:amount"), AggSpec.parse("max:amount"),
      AggSpec.parse("avg:amount"));

  private static JsonNode json(String s) {
    try {
      return Json.parse(s);
    } catch (IOException e) {
      throw new AssertionError(e);
    }
  }

  /** Runs the plan like the DAG would: partial per record, merge per group, render. */
  private static List<String> run(AggregatePlan plan, List<String> values, int shuffleSeed)
      throws IOException {
    Map<String, List<String>> shuffled = new TreeMap<>();
    for (String v : values) {
      JsonNode value = json(v);
      String key = plan.groupKey(value);
      if (key != null) {
        // Through the wire format, as between the two vertices.
        shuffled.computeIfAbsent(key, k -> new ArrayList<>()).add(plan.partialOf(value).encode());
      }
    }
    List<String> out = new ArrayList<>();
    for (Map.Entry<String, List<String>> e : shuffled.entrySet()) {
      List<String> partials = new ArrayList<>(e.getValue());
      Collections.shuffle(partials, new Random(shuffleSeed));
      Partial merged = plan.emptyPartial();
      for (String p : partials) {
        merged.merge(Partial.decode(p, plan.numericFields().size()));
      }
      out.add(Json.write(plan.result(e.getKey(), merged)));
    }
    return out;
  }

  @Test
  void parsesSpecs() {
    assertEquals("count", AggSpec.parse("count").outputName());
    assertEquals("sum_amount", AggSpec.parse("sum:amount").outputName());
    assertEquals("avg_price.net", AggSpec.parse(" AVG:price.net ").outputName());
    assertEquals(AggSpec.Kind.MIN, AggSpec.parse("min:x").kind());
    assertThrows(IllegalArgumentException.class, () -> AggSpec.parse("median:x"));
    assertThrows(IllegalArgumentException.class, () -> AggSpec.parse("sum"));
    assertThrows(IllegalArgumentException.class, () -> AggSpec.parse("sum:"));
    assertThrows(IllegalArgumentException.class, () -> AggSpec.parse("count:x"));
    assertThrows(IllegalArgumentException.class, () -> AggSpec.parse("max:a..b"));
  }

  @Test
  void groupKeysAreCanonicalJsonArrays() {
    AggregatePlan plan = new AggregatePlan(List.of("region", "meta.tier"), ALL);
    assertEquals("[\"eu\",2]", plan.groupKey(json("{\"region\":\"eu\",\"meta\":{\"tier\":2.0}}")));
    assertEquals("[\"eu\",null]", plan.groupKey(json("{\"region\":\"eu\"}")));
    assertEquals("[null,null]", plan.groupKey(json("{}")));
    assertEquals("[{\"a\":1,\"b\":2},null]",
        plan.groupKey(json("{\"region\":{\"b\":2,\"a\":1}}")));
    assertNull(plan.groupKey(json("[1,2]")));
    assertNull(plan.groupKey(json("\"str\"")));
    assertNull(plan.groupKey(json("null")));
    assertEquals("[]", new AggregatePlan(List.of(), ALL).groupKey(json("{\"x\":1}")));
  }

  @Test
  void aggregatesPerGroup() throws IOException {
    AggregatePlan plan = new AggregatePlan(List.of("region"), ALL);
    List<String> out = run(plan, List.of(
        "{\"region\":\"eu\",\"amount\":10}",
        "{\"region\":\"eu\",\"amount\":2.5}",
        "{\"region\":\"eu\",\"amount\":\"12\"}",
        "{\"region\":\"eu\"}",
        "{\"region\":\"us\",\"amount\":-4}",
        "{\"amount\":1}",
        "[\"not\",\"an object\"]",
        "{\"region\":\"none\",\"amount\":null}"), 1);
    assertEquals(List.of(
        "{\"key\":[\"eu\"],\"value\":{\"region\":\"eu\",\"count\":4,\"sum_amount\":12.5,"
            + "\"min_amount\":2.5,\"max_amount\":10,\"avg_amount\":6.25}}",
        "{\"key\":[\"none\"],\"value\":{\"region\":\"none\",\"count\":1,\"sum_amount\":null,"
            + "\"min_amount\":null,\"max_amount\":null,\"avg_amount\":null}}",
        "{\"key\":[\"us\"],\"value\":{\"region\":\"us\",\"count\":1,\"sum_amount\":-4,"
            + "\"min_amount\":-4,\"max_amount\":-4,\"avg_amount\":-4}}",
        "{\"key\":[null],\"value\":{\"region\":null,\"count\":1,\"sum_amount\":1,"
            + "\"min_amount\":1,\"max_amount\":1,\"avg_amount\":1}}"),
        out);
  }

  @Test
  void onlyRequestedAggregatesInRequestedOrder() throws IOException {
    AggregatePlan plan = new AggregatePlan(List.of(),
        List.of(AggSpec.parse("max:b"), AggSpec.parse("count"), AggSpec.parse("sum:a")));
    List<String> out = run(plan, List.of("{\"a\":1,\"b\":5}", "{\"a\":2}", "{\"b\":true}"), 3);
    assertEquals(List.of(
        "{\"key\":[],\"value\":{\"max_b\":5,\"count\":3,\"sum_a\":3}}"), out);
  }

  @Test
  void sumsAreExact() throws IOException {
    AggregatePlan plan = new AggregatePlan(List.of(), List.of(AggSpec.parse("sum:x"),
        AggSpec.parse("avg:x")));
    List<String> values = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      values.add("{\"x\":0.1}");
    }
    assertEquals(List.of("{\"key\":[],\"value\":{\"sum_x\":1,\"avg_x\":0.1}}"),
        run(plan, values, 5));
    assertEquals(List.of("{\"key\":[],\"value\":{\"sum_x\":18014398509481984,"
        + "\"avg_x\":9007199254740992}}"),
        run(plan, List.of("{\"x\":9007199254740992}", "{\"x\":9007199254740992}"), 5));
    assertEquals(List.of("{\"key\":[],\"value\":{\"sum_x\":5,\"avg_x\":1.6666666666666667}}"),
        run(plan, List.of("{\"x\":1}", "{\"x\":2}", "{\"x\":2}"), 5));
  }

  @Test
  void mergeIsOrderAndGroupingIndependent() throws IOException {
    AggregatePlan plan = new AggregatePlan(List.of("g"), ALL);
    Random rnd = new Random(42);
    List<String> values = new ArrayList<>();
    for (int i = 0; i < 500; i++) {
      String amount = rnd.nextInt(4) == 0 ? "null" : rnd.nextBoolean()
          ? String.valueOf(rnd.nextInt(1000) - 500) : String.valueOf(rnd.nextInt(100000) / 100.0);
      values.add("{\"g\":" + rnd.nextInt(5) + ",\"amount\":" + amount + "}");
    }
    List<String> expected = run(plan, values, 0);
    for (int seed = 1; seed < 5; seed++) {
      assertEquals(expected, run(plan, values, seed));
    }
    // Pre-merging in arbitrary chunks (as the parse vertex does) changes nothing.
    Map<String, Partial> byGroup = new TreeMap<>();
    Collections.shuffle(values, new Random(9));
    for (int chunk = 0; chunk < values.size(); chunk += 37) {
      Map<String, Partial> local = new TreeMap<>();
      for (String v : values.subList(chunk, Math.min(values.size(), chunk + 37))) {
        JsonNode value = json(v);
        local.computeIfAbsent(plan.groupKey(value), k -> plan.emptyPartial())
            .merge(plan.partialOf(value));
      }
      for (Map.Entry<String, Partial> e : local.entrySet()) {
        Partial wire = Partial.decode(e.getValue().encode(), plan.numericFields().size());
        byGroup.computeIfAbsent(e.getKey(), k -> plan.emptyPartial()).merge(wire);
      }
    }
    List<String> chunked = new ArrayList<>();
    for (Map.Entry<String, Partial> e : byGroup.entrySet()) {
      chunked.add(Json.write(plan.result(e.getKey(), e.getValue())));
    }
    assertEquals(expected, chunked);
  }

  @Test
  void partialWireFormatRoundTrips() throws IOException {
    AggregatePlan plan = new AggregatePlan(List.of(), ALL);
    Partial p = plan.partialOf(json("{\"amount\":1.25}"))
        .merge(plan.partialOf(json("{\"amount\":-3}")))
        .merge(plan.partialOf(json("{}")));
    String wire = p.encode();
    assertEquals("[3,[2,\"-1.75\",\"-3\",\"1.25\"]]", wire);
    assertEquals(wire, Partial.decode(wire, 1).encode());
    assertEquals("[0,[0]]", plan.emptyPartial().encode());
    assertThrows(IOException.class, () -> Partial.decode("[1]", 1));
    assertThrows(IOException.class, () -> Partial.decode("[1,[1,\"x\",\"1\",\"1\"]]", 1));
    assertThrows(IOException.class, () -> Partial.decode("nope", 1));
  }

  @Test
  void planPayloadRoundTrips() throws IOException {
    AggregatePlan plan = new AggregatePlan(List.of("a", "b.c"), ALL);
    AggregatePlan back = AggregatePlan.fromJson(plan.toJson());
    assertEquals(plan.groupBy(), back.groupBy());
    assertEquals(plan.aggs(), back.aggs());
    assertEquals(List.of("amount"), back.numericFields());
  }
}
