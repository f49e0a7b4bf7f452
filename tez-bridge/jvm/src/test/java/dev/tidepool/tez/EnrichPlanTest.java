package dev.tidepool.tez;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.tidepool.tez.json.Json;
import java.util.List;
import org.junit.jupiter.api.Test;

class EnrichPlanTest {
  @Test
  void appliesFieldsAndKeepsKeyAndDoc() throws Exception {
    EnrichPlan plan = EnrichPlan.parse(List.of("total=price * qty", "label=upper(name)",
        "eq=a==b"));
    String rec = "{\"key\":[1,\"x\"],\"doc\":\"ab01\",\"heads\":[\"ff\"],"
        + "\"value\":{\"price\":2.5,\"qty\":4,\"name\":\"w\",\"a\":1,\"b\":1.0}}";
    assertEquals("{\"key\":[1,\"x\"],\"doc\":\"ab01\",\"fields\":{\"total\":10,\"label\":\"W\","
        + "\"eq\":true}}", Json.write(plan.apply(Json.parse(rec))));
    EnrichPlan back = EnrichPlan.fromJson(plan.toJson());
    assertEquals(Json.write(plan.apply(Json.parse(rec))), Json.write(back.apply(Json.parse(rec))));
  }

  @Test
  void missingValueGivesNulls() throws Exception {
    EnrichPlan plan = EnrichPlan.parse(List.of("n=len(name)"));
    assertEquals("{\"key\":5,\"doc\":\"aa\",\"fields\":{\"n\":null}}",
        Json.write(plan.apply(Json.parse("{\"key\":5,\"doc\":\"aa\",\"heads\":[]}"))));
  }

  @Test
  void rejectsBadSpecs() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> EnrichPlan.parse(List.of("x=1 +")));
    assertTrue(e.getMessage().contains("cannot parse expression"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> EnrichPlan.parse(List.of("noequals")));
    assertThrows(IllegalArgumentException.class, () -> EnrichPlan.parse(List.of("=1")));
    assertThrows(IllegalArgumentException.class, () -> EnrichPlan.parse(List.of("a=1", "a=2")));
    assertThrows(IllegalArgumentException.class, () -> EnrichPlan.parse(List.of()));
  }
}
