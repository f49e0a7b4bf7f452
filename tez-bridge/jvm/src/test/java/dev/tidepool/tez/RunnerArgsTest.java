package dev.tidepool.tez;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import org.junit.jupiter.api.Test;

class RunnerArgsTest {
  private static RunnerArgs parse(String... a) {
    return RunnerArgs.parse(a);
  }

  @Test
  void aggregate() {
    RunnerArgs a = parse("--dag", "aggregate", "--input", "/in", "--output=/out",
        "--fs-default", "hdfs://127.0.0.1:9000", "--group-by", "a, b.c", "--group-by", "d",
        "--agg", "count", "--agg", "avg:x");
    assertEquals(RunnerArgs.Kind.AGGREGATE, a.dag);
    assertEquals("/out", a.output);
    assertEquals(List.of("a", "b.c", "d"), a.groupBy);
    assertEquals("[count, avg:x]", a.aggs.toString());
    assertEquals("tidepool-aggregate", a.name);
  }

  @Test
  void defaultsToCount() {
    assertEquals("[count]",
        parse("--dag", "aggregate", "--input", "i", "--output", "o").aggs.toString());
  }

  @Test
  void enrichFieldKeepsEverythingAfterFirstEquals() {
    RunnerArgs a = parse("--dag", "enrich", "--input", "i", "--output", "o",
        "--field=eq=a==b", "--field", "t = x + 1", "--name", "job");
    assertEquals(List.of("eq=a==b", "t = x + 1"), a.fields);
    assertEquals("job", a.name);
  }

  @Test
  void failNeedsNoInput() {
    assertEquals(RunnerArgs.Kind.FAIL, parse("--dag", "fail", "--output", "o").dag);
  }

  @Test
  void errors() {
    assertThrows(IllegalArgumentException.class, () -> parse());
    assertThrows(IllegalArgumentException.class, () -> parse("--dag", "sort", "--output", "o"));
    assertThrows(IllegalArgumentException.class, () -> parse("--dag", "enrich", "--input", "i",
        "--output", "o"));
    assertThrows(IllegalArgumentException.class, () -> parse("--dag", "aggregate", "--input",
        "i"));
    assertThrows(IllegalArgumentException.class, () -> parse("--dag", "aggregate", "--input",
        "i", "--output", "o", "--agg", "median:x"));
    assertThrows(IllegalArgumentException.class, () -> parse("--dag", "aggregate", "--input",
        "i", "--output", "o", "--field", "x=1"));
    assertThrows(IllegalArgumentException.class, () -> parse("--dag", "aggregate", "--input",
        "i", "--output", "o", "--bogus", "1"));
    assertThrows(IllegalArgumentException.class, () -> parse("--dag", "aggregate", "--input"));
    assertThrows(IllegalArgumentException.class, () -> parse("--dag", "aggregate", "--input",
        "i", "--output", "o", "--reducers", "0"));
  }
}
