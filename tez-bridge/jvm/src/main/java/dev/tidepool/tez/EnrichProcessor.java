package dev.tidepool.tez;

import dev.tidepool.tez.json.Json;
import org.apache.hadoop.io.NullWritable;
import org.apache.hadoop.io.Text;
import org.apache.tez.mapreduce.processor.SimpleMRProcessor;
import org.apache.tez.runtime.api.ProcessorContext;
import org.apache.tez.runtime.library.api.KeyValueReader;
import org.apache.tez.runtime.library.api.KeyValueWriter;

/** The single vertex of the enrich DAG: evaluates the computed fields on every record. */
public final class EnrichProcessor extends SimpleMRProcessor {
  public EnrichProcessor(ProcessorContext context) {
    super(context);
  }

  @Override
  public void run() throws Exception {
    EnrichPlan plan = EnrichPlan.fromJson(Payloads.text(getContext().getUserPayload()));
    KeyValueReader reader = (KeyValueReader) getInputs().get(Dags.INPUT).getReader();
    KeyValueWriter writer = (KeyValueWriter) getOutputs().get(Dags.OUTPUT).getWriter();
    Text out = new Text();
    while (reader.next()) {
      Text line = (Text) reader.getCurrentValue();
      if (Records.isBlank(line)) {
        continue;
      }
      out.set(Json.write(plan.apply(Records.parse(line, reader.getCurrentKey()))));
      writer.write(NullWritable.get(), out);
    }
  }
}
