package dev.tidepool.tez;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.tidepool.tez.agg.AggSpec;
import dev.tidepool.tez.agg.AggregatePlan;
import dev.tidepool.tez.json.Json;
import java.io.IOException;
import java.util.List;
import org.apache.tez.dag.api.UserPayload;
import org.junit.jupiter.api.Test;

class FilterTest {
  private static JsonNode json(String text) {
    try {
      return Json.parse(text);
    } catch (IOException e) {
      throw new AssertionError(text, e);
    }
  }

  private static boolean keeps(String where, String value) {
    return Filter.parse(where).keeps(json(value));
  }

  @Test
  void keepsWhatIsTruthy() {
    assertTrue(keeps("hours > 2", "{\"hours\": 3}"));
    assertFalse(keeps("hours > 2", "{\"hours\": 2}"));
    assertTrue(keeps("project == 'alpha' && !done", "{\"project\": \"alpha\", \"done\": false}"));
    assertFalse(keeps("project == 'alpha' && !done", "{\"project\": \"alpha\", \"done\": true}"));
    assertTrue(keeps("len(title)", "{\"title\": \"x\"}"));
    assertFalse(keeps("len(title)", "{\"title\": \"\"}"));
    assertTrue(keeps("address.city == 'Lyon'", "{\"address\": {\"city\": \"Lyon\"}}"));
    assertTrue(keeps("tags.1 == 'b'", "{\"tags\": [\"a\", \"b\"]}"));
  }

  @Test
  void missingNullAndMismatchedFieldsDropTheRecord() {
    assertFalse(keeps("hours > 2", "{}"));
    assertFalse(keeps("hours > 2", "{\"hours\": null}"));
    assertFalse(keeps("hours > 2", "{\"hours\": \"many\"}"));
    assertFalse(keeps("hours > 2", "[1, 2]"));
    assertFalse(keeps("hours > 2", "7"));
    // ... unless the expression says what a missing field means.
    assertTrue(keeps("coalesce(hours, 0) < 2", "{}"));
    assertTrue(keeps("hours == null", "{}"));
    assertTrue(keeps("!done", "{}"));
  }

  @Test
  void noExpressionKeepsEverything() {
    assertTrue(keeps(null, "{}"));
    assertTrue(keeps("  ", "null"));
    assertNull(Filter.parse(null).source());
  }

  @Test
  void aParseErrorNamesTheExpression() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> Filter.parse("hours >"));
    assertTrue(e.getMessage().contains("--where"), e.getMessage());
    assertTrue(e.getMessage().contains("'hours >'"), e.getMessage());
  }

  @Test
  void payloadCarriesPlanAndFilter() throws IOException {
    AggregatePlan plan = new AggregatePlan(List.of("a", "b"),
        List.of(AggSpec.count(), AggSpec.parse("sum:x")));
    UserPayload p = Payloads.filtered(Filter.parse("x > 1"), plan.toJson());
    Payloads.Filtered back = Payloads.filtered(p);
    assertEquals("x > 1", back.where().source());
    assertEquals(plan.toJson(), AggregatePlan.fromJson(back.plan()).toJson());
    assertNull(Payloads.filtered(Payloads.filtered(Filter.parse(null), "[]")).where().source());
  }

  @Test
  void runnerArguments() {
    RunnerArgs a = RunnerArgs.parse(new String[] {"--dag", "enrich", "--input", "i", "--output",
        "o", "--field", "s=x*2", "--where", "x != null"});
    assertEquals("x != null", a.where);
    assertThrows(IllegalArgumentException.class, () -> RunnerArgs.parse(new String[] {"--dag",
        "aggregate", "--input", "i", "--output", "o", "--where", "a", "--where", "b"}));
    assertThrows(IllegalArgumentException.class, () -> RunnerArgs.parse(new String[] {"--dag",
        "fail", "--output", "o", "--where", "a"}));
  }
}
