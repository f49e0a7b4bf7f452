package dev.tidepool.tez;

import dev.tidepool.tez.agg.AggregatePlan;
import org.apache.tez.client.TezClient;
import org.apache.tez.dag.api.DAG;
import org.apache.tez.dag.api.TezConfiguration;
import org.apache.tez.dag.api.client.DAGClient;
import org.apache.tez.dag.api.client.DAGStatus;
import org.apache.hadoop.yarn.api.records.LocalResource;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A warm Tez session: one JVM and one application master for many DAGs.
 * {@code SessionRunner [--fs-default URI] [--tez-conf-dir DIR] [--staging-dir P] [--name N]
 * [--conf K=V]...} starts a TezClient in session mode (local mode, or YARN with a conf dir),
 * prints {@code READY} on stdout, then reads one request per stdin line: the arguments of
 * {@link DagRunner} for one DAG ({@code --dag}, {@code --input}, {@code --output}, ...) separated by
 * tabs. Each request answers one stdout line, {@code DAG_STATUS <state> <seconds>} (seconds of
 * that DAG), with diagnostics on stderr; a bad request answers {@code NOT_SUBMITTED} and the
 * session goes on. End-of-file on stdin stops the session (on YARN, its application) and exits.
 */
public final class SessionRunner {
  /** DAG names must be unique within a session. */
  private static int submitted;

  private SessionRunner() {
  }

  public static void main(String[] argv) throws Exception {
    PrintStream stdout = System.out;
    System.setOut(System.err);
    DagRunner helper = new DagRunner(System.err, System.nanoTime());
    RunnerArgs session = new RunnerArgs();
    session.name = "tidepool-session";
    List<String> args = Arrays.asList(argv);
    for (int i = 0; i + 1 < args.size(); i += 2) {
      String v = args.get(i + 1);
      switch (args.get(i)) {
        case "--fs-default" -> session.fsDefault = v;
        case "--tez-conf-dir" -> session.tezConfDir = v;
        case "--staging-dir" -> session.stagingDir = v;
        case "--name" -> session.name = v;
        case "--conf" -> {
          int e = v.indexOf('=');
          if (e <= 0) {
            System.err.println("SessionRunner: --conf expects KEY=VALUE, got '" + v + "'");
            Runtime.getRuntime().halt(2);
          }
          session.conf.add(new String[] {v.substring(0, e), v.substring(e + 1)});
        }
        default -> {
          System.err.println("SessionRunner: unknown option " + args.get(i));
          Runtime.getRuntime().halt(2);
        }
      }
    }
    if (args.size() % 2 != 0) {
      System.err.println("SessionRunner: " + args.get(args.size() - 1) + " needs a value");
      Runtime.getRuntime().halt(2);
    }
    int code = 0;
    TezClient client = null;
    try {
      TezConfiguration conf = session.tezConfDir == null
          ? helper.localConf(session) : helper.yarnConf(session);
      if (session.tezConfDir != null) {
        // On YARN a DAG's latency is mostly waiting for task containers: a session keeps a few
        // between DAGs and gives them to any task (the cluster's tez-site.xml may say otherwise).
        conf.setIfUnset(TezConfiguration.TEZ_AM_SESSION_MIN_HELD_CONTAINERS, "2");
        conf.setIfUnset(TezConfiguration.TEZ_AM_CONTAINER_REUSE_RACK_FALLBACK_ENABLED, "true");
        conf.setIfUnset(TezConfiguration.TEZ_AM_CONTAINER_REUSE_NON_LOCAL_FALLBACK_ENABLED, "true");
      }
      for (String[] kv : session.conf) {
        conf.set(kv[0], kv[1]);
      }
      Map<String, LocalResource> jar = null;
      if (session.tezConfDir == null) {
        client = TezClient.create(session.name, conf, true);
      } else {
        jar = DagRunner.shipOwnJar(conf);
        client = TezClient.create(session.name, conf, true, jar, null);
      }
      client.start();
      client.waitTillReady();
      stdout.println("READY");
      stdout.flush();
      BufferedReader in = new BufferedReader(new InputStreamReader(System.in,
          StandardCharsets.UTF_8));
      for (String line; (line = in.readLine()) != null; ) {
        if (line.isBlank()) {
          continue;
        }
        long start = System.nanoTime();
        String state = runOne(client, conf, jar, line.split("\t"));
        stdout.println(String.format(Locale.ROOT, "DAG_STATUS %s %.3f", state,
            (System.nanoTime() - start) / 1e9));
        stdout.flush();
      }
    } catch (Throwable t) {
      System.err.println("SessionRunner: unexpected error: " + t);
      t.printStackTrace(System.err);
      code = 1;
    } finally {
      if (client != null) {
        try {
          client.stop();
        } catch (Exception e) {
          System.err.println("SessionRunner: warning: stopping the session: " + e);
        }
      }
      helper.deleteTempDir();
      stdout.flush();
      Runtime.getRuntime().halt(code);
    }
  }

  /** Runs one request on the session; its final state, or NOT_SUBMITTED for a bad request. */
  private static String runOne(TezClient client, TezConfiguration sessionConf,
      Map<String, LocalResource> jar, String[] request) {
    RunnerArgs args;
    AggregatePlan aggPlan = null;
    EnrichPlan enrichPlan = null;
    Filter where;
    try {
      List<String> argv = new ArrayList<>(Arrays.asList(request));
      args = RunnerArgs.parse(argv.toArray(new String[0]));
      if (args.dag == RunnerArgs.Kind.AGGREGATE) {
        aggPlan = new AggregatePlan(args.groupBy, args.aggs);
      } else if (args.dag == RunnerArgs.Kind.ENRICH) {
        enrichPlan = EnrichPlan.parse(args.fields);
      }
      where = Filter.parse(args.where);
    } catch (IllegalArgumentException e) {
      System.err.println("SessionRunner: " + e.getMessage());
      return "NOT_SUBMITTED";
    }
    TezConfiguration conf = new TezConfiguration(sessionConf);
    for (String[] kv : args.conf) {
      conf.set(kv[0], kv[1]);
    }
    try {
      DagRunner.checkPaths(args, conf);
    } catch (Exception e) {
      System.err.println("SessionRunner: " + e.getMessage());
      return "NOT_SUBMITTED";
    }
    args.name = args.name + "-" + (++submitted);
    DAG dag = switch (args.dag) {
      case AGGREGATE -> Dags.aggregate(args.name, conf, args.input, args.output, aggPlan, where,
          args.reducers);
      case ENRICH -> Dags.enrich(args.name, conf, args.input, args.output, enrichPlan, where);
      default -> Dags.fail(args.name, conf, args.output);
    };
    if (jar != null) {
      dag.addTaskLocalFiles(jar);
    }
    try {
      DAGClient running = client.submitDAG(dag);
      DAGStatus status = running.waitForCompletion();
      if (status.getState() != DAGStatus.State.SUCCEEDED) {
        System.err.println("SessionRunner: DAG " + args.name + " ended " + status.getState());
        List<String> diagnostics = status.getDiagnostics();
        if (diagnostics != null) {
          diagnostics.forEach(System.err::println);
        }
        DagRunner.removeFailedOutput(args, conf);
      }
      return status.getState().name();
    } catch (Exception e) {
      System.err.println("SessionRunner: DAG " + args.name + ": " + e);
      DagRunner.removeFailedOutput(args, conf);
      return "ERROR";
    }
  }
}
