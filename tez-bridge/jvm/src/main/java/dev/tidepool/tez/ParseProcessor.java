package dev.tidepool.tez;

import com.fasterxml.jackson.databind.JsonNode;
import dev.tidepool.tez.agg.AggregatePlan;
import dev.tidepool.tez.agg.Partial;
import org.apache.hadoop.io.Text;
import org.apache.tez.mapreduce.processor.SimpleMRProcessor;
import org.apache.tez.runtime.api.ProcessorContext;
import org.apache.tez.runtime.library.api.KeyValueReader;
import org.apache.tez.runtime.library.api.KeyValueWriter;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * First vertex of the aggregate DAG: parses JSON Lines, keeps the records the DAG's filter passes
 * and emits (group key, partial aggregate).
 * Partials are pre-merged in a bounded in-memory map, which keeps the shuffle small when there
 * are few groups; the map is flushed whenever it grows past {@link #MAX_GROUPS}.
 */
public final class ParseProcessor extends SimpleMRProcessor {
  static final int MAX_GROUPS = 10_000;

  public ParseProcessor(ProcessorContext context) {
    super(context);
  }

  @Override
  public void run() throws Exception {
    Payloads.Filtered payload = Payloads.filtered(getContext().getUserPayload());
    AggregatePlan plan = AggregatePlan.fromJson(payload.plan());
    Filter where = payload.where();
    KeyValueReader reader = (KeyValueReader) getInputs().get(Dags.INPUT).getReader();
    KeyValueWriter writer = (KeyValueWriter) getOutputs().get(Dags.AGGREGATE).getWriter();
    Map<String, Partial> groups = new LinkedHashMap<>();
    while (reader.next()) {
      Text line = (Text) reader.getCurrentValue();
      if (Records.isBlank(line)) {
        continue;
      }
      JsonNode value = Records.value(Records.parse(line, reader.getCurrentKey()));
      if (!where.keeps(value)) {
        continue;
      }
      String key = plan.groupKey(value);
      if (key == null) {
        continue; // value is not an object
      }
      Partial p = plan.partialOf(value);
      Partial prev = groups.putIfAbsent(key, p);
      if (prev != null) {
        prev.merge(p);
      } else if (groups.size() > MAX_GROUPS) {
        flush(groups, writer);
      }
    }
    flush(groups, writer);
  }

  private static void flush(Map<String, Partial> groups, KeyValueWriter writer) throws Exception {
    Text k = new Text();
    Text v = new Text();
    for (Map.Entry<String, Partial> e : groups.entrySet()) {
      k.set(e.getKey());
      v.set(e.getValue().encode());
      writer.write(k, v);
    }
    groups.clear();
  }
}
