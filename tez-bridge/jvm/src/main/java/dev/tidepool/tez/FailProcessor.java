package dev.tidepool.tez;

import org.apache.tez.mapreduce.processor.SimpleMRProcessor;
import org.apache.tez.runtime.api.ProcessorContext;

/**
 * A processor that always fails: the DAG ends FAILED and its output is never committed. Used to
 * prove that a failed run writes nothing back.
 */
public final class FailProcessor extends SimpleMRProcessor {
  public FailProcessor(ProcessorContext context) {
    super(context);
  }

  @Override
  public void run() throws Exception {
    throw new IllegalStateException("tidepool fail DAG: deliberate processor failure");
  }
}
