package dev.tidepool.tez;

import dev.tidepool.tez.agg.AggregatePlan;
import dev.tidepool.tez.agg.Partial;
import dev.tidepool.tez.json.Json;
import org.apache.hadoop.io.NullWritable;
import org.apache.hadoop.io.Text;
import org.apache.tez.mapreduce.processor.SimpleMRProcessor;
import org.apache.tez.runtime.api.ProcessorContext;
import org.apache.tez.runtime.library.api.KeyValueWriter;
import org.apache.tez.runtime.library.api.KeyValuesReader;

/** Second vertex of the aggregate DAG: merges the partials of each group and writes one line. */
public final class AggregateProcessor extends SimpleMRProcessor {
  public AggregateProcessor(ProcessorContext context) {
    super(context);
  }

  @Override
  public void run() throws Exception {
    AggregatePlan plan = AggregatePlan.fromJson(Payloads.text(getContext().getUserPayload()));
    int fields = plan.numericFields().size();
    KeyValuesReader reader = (KeyValuesReader) getInputs().get(Dags.PARSE).getReader();
    KeyValueWriter writer = (KeyValueWriter) getOutputs().get(Dags.OUTPUT).getWriter();
    Text line = new Text();
    while (reader.next()) {
      String key = reader.getCurrentKey().toString();
      Partial merged = plan.emptyPartial();
      for (Object v : reader.getCurrentValues()) {
        merged.merge(Partial.decode(v.toString(), fields));
      }
      line.set(Json.write(plan.result(key, merged)));
      writer.write(NullWritable.get(), line);
    }
  }
}
