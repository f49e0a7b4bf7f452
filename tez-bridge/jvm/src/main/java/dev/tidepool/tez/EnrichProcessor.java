package dev.tidepool.tez;

import com.fasterxml.jackson.databind.JsonNode;
import dev.tidepool.tez.json.Json;
import org.apache.hadoop.io.NullWritable;
import org.apache.hadoop.io.Text;
import org.apache.tez.mapreduce.processor.SimpleMRProcessor;
import org.apache.tez.runtime.api.ProcessorContext;
import org.apache.tez.runtime.library.api.KeyValueReader;
import org.apache.tez.runtime.library.api.KeyValueWriter;

/** The single vertex of the enrich DAG: evaluates the computed fields on every record
 * the DAG's filter keeps (the others give no output line). */
public final class EnrichProcessor extends SimpleMRProcessor {
  public EnrichProcessor(ProcessorContext context) {
    super(context);
  }

  @Override
  public void run() throws Exception {
    Payloads.Filtered payload = Payloads.filtered(getContext().getUserPayload());
    EnrichPlan plan = EnrichPlan.fromJson(payload.plan());
    Filter where = payload.where();
    KeyValueReader reader = (KeyValueReader) getInputs().get(Dags.INPUT).getReader();
    KeyValueWriter writer = (KeyValueWriter) getOutputs().get(Dags.OUTPUT).getWriter();
    Text out = new Text();
    while (reader.next()) {
      Text line = (Text) reader.getCurrentValue();
      if (Records.isBlank(line)) {
        continue;
      }
      JsonNode record = Records.parse(line, reader.getCurrentKey());
      if (!where.keeps(Records.value(record))) {
        continue;
      }
      out.set(Json.write(plan.apply(record)));
      writer.write(NullWritable.get(), out);
    }
  }
}
