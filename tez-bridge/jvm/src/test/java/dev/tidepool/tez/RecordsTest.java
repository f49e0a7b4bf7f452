package dev.tidepool.tez;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import org.apache.hadoop.io.Text;
import org.junit.jupiter.api.Test;

class RecordsTest {
  @Test
  void parsesObjects() throws IOException {
    Text line = new Text("{\"key\":[1,\"a\"],\"doc\":\"ff\",\"heads\":[],\"value\":{\"x\":1}}");
    assertEquals("{\"x\":1}", Records.value(Records.parse(line, 0L)).toString());
    assertTrue(Records.value(Records.parse(new Text("{\"key\":1}"), 0L)).isNull());
  }

  @Test
  void rejectsMalformedLines() {
    for (String bad : new String[] {"not json", "{\"key\":1} trailing", "{\"key\":1}{}", "[1,2]",
        "\"text\"", "42", "null", "{\"key\":", "{'key':1}"}) {
      IOException e = assertThrows(IOException.class, () -> Records.parse(new Text(bad), 7L), bad);
      assertTrue(e.getMessage().contains("malformed input record at byte offset 7"),
          e.getMessage());
    }
  }

  @Test
  void blankLines() {
    assertTrue(Records.isBlank(new Text("")));
    assertTrue(Records.isBlank(new Text("  \t\r")));
    assertFalse(Records.isBlank(new Text(" {} ")));
  }
}
