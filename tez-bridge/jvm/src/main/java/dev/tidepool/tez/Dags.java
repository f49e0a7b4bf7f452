package dev.tidepool.tez;

import dev.tidepool.tez.agg.AggregatePlan;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.io.Text;
import org.apache.hadoop.mapreduce.lib.input.FileInputFormat;
import org.apache.hadoop.mapreduce.lib.input.TextInputFormat;
import org.apache.hadoop.mapreduce.lib.output.TextOutputFormat;
import org.apache.tez.dag.api.DAG;
import org.apache.tez.dag.api.DataSinkDescriptor;
import org.apache.tez.dag.api.DataSourceDescriptor;
import org.apache.tez.dag.api.Edge;
import org.apache.tez.dag.api.ProcessorDescriptor;
import org.apache.tez.dag.api.Vertex;
import org.apache.tez.mapreduce.input.MRInput;
import org.apache.tez.mapreduce.output.MROutput;
import org.apache.tez.runtime.library.conf.OrderedPartitionedKVEdgeConfig;
import org.apache.tez.runtime.library.partitioner.HashPartitioner;

/** Builds the three DAGs. Vertex, input and output names are shared with the processors. */
final class Dags {
  static final String INPUT = "input";
  static final String OUTPUT = "output";
  static final String PARSE = "parse";
  static final String AGGREGATE = "aggregate";
  static final String ENRICH = "enrich";
  static final String FAIL = "fail";

  private Dags() {
  }

  /**
   * Text lines of every file under {@code paths} (comma-separated; globs allowed; directories
   * are read recursively; names starting with '_' or '.' are skipped).
   */
  private static DataSourceDescriptor input(Configuration conf, String paths) {
    Configuration c = new Configuration(conf);
    c.setBoolean(FileInputFormat.INPUT_DIR_RECURSIVE, true);
    return MRInput.createConfigBuilder(c, TextInputFormat.class, paths).build();
  }

  private static DataSinkDescriptor output(Configuration conf, String path) {
    return MROutput.createConfigBuilder(new Configuration(conf), TextOutputFormat.class, path)
        .build();
  }

  /** input -> parse (filter) -(scatter-gather, sorted by group)-> aggregate -> output. */
  static DAG aggregate(String name, Configuration conf, String in, String out,
      AggregatePlan plan, Filter where, int reducers) {
    String payload = plan.toJson();
    Vertex parse = Vertex.create(PARSE,
            ProcessorDescriptor.create(ParseProcessor.class.getName())
                .setUserPayload(Payloads.filtered(where, payload)))
        .addDataSource(INPUT, input(conf, in));
    Vertex aggregate = Vertex.create(AGGREGATE,
            ProcessorDescriptor.create(AggregateProcessor.class.getName())
                .setUserPayload(Payloads.of(payload)), reducers)
        .addDataSink(OUTPUT, output(conf, out));
    OrderedPartitionedKVEdgeConfig edge = OrderedPartitionedKVEdgeConfig
        .newBuilder(Text.class.getName(), Text.class.getName(), HashPartitioner.class.getName())
        .setFromConfiguration(conf)
        .build();
    return DAG.create(name)
        .addVertex(parse)
        .addVertex(aggregate)
        .addEdge(Edge.create(parse, aggregate, edge.createDefaultEdgeProperty()));
  }

  /** input -> enrich (filter, then fields) -> output. */
  static DAG enrich(String name, Configuration conf, String in, String out, EnrichPlan plan,
      Filter where) {
    Vertex enrich = Vertex.create(ENRICH,
            ProcessorDescriptor.create(EnrichProcessor.class.getName())
                .setUserPayload(Payloads.filtered(where, plan.toJson())))
        .addDataSource(INPUT, input(conf, in))
        .addDataSink(OUTPUT, output(conf, out));
    return DAG.create(name).addVertex(enrich);
  }

  /**
   * One task that throws, with an output that would be committed on success. It has no input so
   * that it fails even when the input directory is empty (an empty input has no splits, hence no
   * tasks, and would succeed).
   */
  static DAG fail(String name, Configuration conf, String out) {
    Vertex fail = Vertex.create(FAIL, ProcessorDescriptor.create(FailProcessor.class.getName()), 1)
        .addDataSink(OUTPUT, output(conf, out));
    return DAG.create(name).addVertex(fail);
  }
}
