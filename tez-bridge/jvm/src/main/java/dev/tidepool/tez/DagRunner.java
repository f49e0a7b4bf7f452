package dev.tidepool.tez;

import dev.tidepool.tez.agg.AggregatePlan;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.yarn.api.records.LocalResource;
import org.apache.hadoop.yarn.api.records.LocalResourceType;
import org.apache.hadoop.yarn.api.records.LocalResourceVisibility;
import org.apache.hadoop.yarn.api.records.URL;
import org.apache.tez.client.TezClient;
import org.apache.tez.dag.api.DAG;
import org.apache.tez.dag.api.TezConfiguration;
import org.apache.tez.dag.api.client.DAGClient;
import org.apache.tez.dag.api.client.DAGStatus;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Stream;

/**
 * Runs one Tidepool DAG (aggregate, enrich or fail) in Tez local mode, or on YARN when given a
 * directory of cluster configuration files. See README.md for the arguments and formats.
 *
 * <p>Stdout carries exactly one line, {@code DAG_STATUS <state> <seconds>}; everything else
 * (logs, diagnostics, usage) goes to stderr.
 */
public final class DagRunner {
  static final int EXIT_OK = 0;
  static final int EXIT_ERROR = 1;
  static final int EXIT_FAILED = 2;

  private static final String[] SITE_FILES = {
      "core-site.xml", "hdfs-site.xml", "yarn-site.xml", "mapred-site.xml", "tez-site.xml"
  };

  private volatile String state = "NOT_SUBMITTED";
  private volatile File tempDir;
  /** On YARN, the submitted DAG: killed if the parent goes away while it runs. */
  private volatile DAGClient yarnDag;
  private final AtomicBoolean ending = new AtomicBoolean();
  private final PrintStream stdout;
  private final long start;

  DagRunner(PrintStream stdout, long start) {
    this.stdout = stdout;
    this.start = start;
  }

  public static void main(String[] argv) {
    PrintStream stdout = System.out;
    // Libraries occasionally print to System.out; keep stdout for the status line only.
    System.setOut(System.err);
    DagRunner runner = new DagRunner(stdout, System.nanoTime());
    int code;
    try {
      code = runner.run(argv);
    } catch (UsageException e) {
      System.err.println("DagRunner: " + e.getMessage());
      if (e.argumentError) {
        System.err.println("(run with --help for usage)");
      }
      code = EXIT_FAILED;
    } catch (Throwable t) {
      System.err.println("DagRunner: unexpected error: " + t);
      t.printStackTrace(System.err);
      String hint = HostNames.hint(t);
      if (hint != null) {
        System.err.println("DagRunner: " + hint);
      }
      code = EXIT_ERROR;
    }
    runner.end(code);
  }

  /**
   * The one way out, whichever thread gets here first: deletes the scratch space, prints the
   * status line and halts. Tez and Hadoop leave non-daemon threads behind, hence the halt (which
   * runs no shutdown hooks and no deleteOnExit: the bridge points java.io.tmpdir at a directory
   * it removes).
   */
  private void end(int code) {
    if (!ending.compareAndSet(false, true)) {
      // The other thread is ending the process; its halt stops this one too.
      while (true) {
        try {
          Thread.sleep(Long.MAX_VALUE);
        } catch (InterruptedException e) {
          // Keep waiting for the halt.
        }
      }
    }
    deleteTempDir();
    double seconds = (System.nanoTime() - start) / 1e9;
    System.err.flush();
    stdout.println(String.format(Locale.ROOT, "DAG_STATUS %s %.3f", state, seconds));
    stdout.flush();
    Runtime.getRuntime().halt(code);
  }

  /** The parent is gone (stdin closed): kill the DAG if it runs on YARN, clean up, exit 1. */
  private void abandon() {
    System.err.println("DagRunner: stdin closed (the bridge is gone); stopping");
    DAGClient dag = yarnDag;
    if (dag != null) {
      try {
        dag.tryKillDAG();
      } catch (Exception e) {
        System.err.println("DagRunner: could not kill the DAG: " + e);
      }
    }
    state = "KILLED";
    end(EXIT_ERROR);
  }

  /** A problem with the request itself (arguments, expressions, paths): exit 2, no DAG. */
  static final class UsageException extends Exception {
    private static final long serialVersionUID = 1L;

    final boolean argumentError;

    UsageException(String message) {
      this(message, false);
    }

    UsageException(String message, boolean argumentError) {
      super(message);
      this.argumentError = argumentError;
    }
  }

  int run(String[] argv) throws Exception {
    RunnerArgs args;
    AggregatePlan aggPlan = null;
    EnrichPlan enrichPlan = null;
    Filter where;
    try {
      args = RunnerArgs.parse(argv);
      if (args.help) {
        System.err.println(RunnerArgs.USAGE);
        state = "HELP";
        return EXIT_OK;
      }
      if (args.dag == RunnerArgs.Kind.AGGREGATE) {
        aggPlan = new AggregatePlan(args.groupBy, args.aggs);
      } else if (args.dag == RunnerArgs.Kind.ENRICH) {
        enrichPlan = EnrichPlan.parse(args.fields);
      }
      where = Filter.parse(args.where);
    } catch (IllegalArgumentException e) {
      throw new UsageException(e.getMessage(), true);
    }
    if (args.exitOnStdinEof) {
      StdinWatcher.watch(System.in, this::abandon);
    }

    TezConfiguration conf = args.tezConfDir == null ? localConf(args) : yarnConf(args);
    for (String[] kv : args.conf) {
      conf.set(kv[0], kv[1]);
    }

    checkPaths(args, conf);

    DAG dag;
    switch (args.dag) {
      case AGGREGATE:
        dag = Dags.aggregate(args.name, conf, args.input, args.output, aggPlan, where,
            args.reducers);
        break;
      case ENRICH:
        dag = Dags.enrich(args.name, conf, args.input, args.output, enrichPlan, where);
        break;
      default:
        dag = Dags.fail(args.name, conf, args.output);
        break;
    }

    TezClient client;
    if (args.tezConfDir == null) {
      client = TezClient.create(args.name, conf);
    } else {
      Map<String, LocalResource> jar = shipOwnJar(conf);
      client = TezClient.create(args.name, conf, jar, null);
      dag.addTaskLocalFiles(jar);
    }
    client.start();
    try {
      client.waitTillReady();
      state = "SUBMITTING";
      DAGClient dagClient = client.submitDAG(dag);
      state = "SUBMITTED";
      Thread killOnExit = null;
      if (args.tezConfDir != null) {
        // On YARN the DAG outlives this process: kill it if we are terminated while it runs.
        killOnExit = new Thread(() -> {
          try {
            dagClient.tryKillDAG();
          } catch (Exception e) {
            System.err.println("DagRunner: could not kill the DAG: " + e);
          }
        }, "kill-dag-on-exit");
        Runtime.getRuntime().addShutdownHook(killOnExit);
        yarnDag = dagClient;
      }
      DAGStatus status = dagClient.waitForCompletion();
      yarnDag = null;
      if (killOnExit != null) {
        Runtime.getRuntime().removeShutdownHook(killOnExit);
      }
      state = status.getState().name();
      if (status.getState() == DAGStatus.State.SUCCEEDED) {
        return EXIT_OK;
      }
      System.err.println("DagRunner: DAG " + args.name + " ended " + state);
      List<String> diagnostics = status.getDiagnostics();
      if (diagnostics != null) {
        for (String d : diagnostics) {
          System.err.println(d);
        }
      }
      removeFailedOutput(args, conf);
      return EXIT_FAILED;
    } finally {
      try {
        client.stop();
      } catch (Exception e) {
        System.err.println("DagRunner: warning: stopping the Tez client: " + e);
      }
    }
  }

  /** Local mode: the AM and all tasks run inside this JVM. */
  TezConfiguration localConf(RunnerArgs args) throws IOException {
    TezConfiguration conf = new TezConfiguration();
    conf.set(FileSystem.FS_DEFAULT_NAME_KEY, args.fsDefault == null ? "file:///" : args.fsDefault);
    conf.setBoolean(TezConfiguration.TEZ_LOCAL_MODE, true);
    conf.setBoolean(TezConfiguration.TEZ_LOCAL_MODE_WITHOUT_NETWORK, true);
    conf.setBoolean(TezConfiguration.TEZ_IGNORE_LIB_URIS, true);
    conf.setBoolean("tez.runtime.optimize.local.fetch", true);
    // Failures in local mode are deterministic (bad input, bad code): do not retry them.
    conf.setInt(TezConfiguration.TEZ_AM_TASK_MAX_FAILED_ATTEMPTS, 1);
    conf.setInt(TezConfiguration.TEZ_AM_INLINE_TASK_EXECUTION_MAX_TASKS,
        Math.max(1, Math.min(4, Runtime.getRuntime().availableProcessors())));
    // Scratch space of this run, deleted at exit. Local mode otherwise localizes task files into
    // the current directory (tez.local.cache.root.folder defaults to "."), where concurrent runs
    // would collide.
    tempDir = Files.createTempDirectory("tidepool-tez-").toFile();
    conf.set(TezConfiguration.TEZ_LOCAL_CACHE_ROOT_FOLDER, new File(tempDir, "cache").getPath());
    new File(tempDir, "cache").mkdir();
    String staging = args.stagingDir;
    if (staging == null) {
      staging = new File(tempDir, "staging").toURI().toString();
    }
    conf.set(TezConfiguration.TEZ_AM_STAGING_DIR, staging);
    return conf;
  }

  /** YARN: cluster configuration from --tez-conf-dir; tez.lib.uris must be set there. */
  TezConfiguration yarnConf(RunnerArgs args) throws UsageException {
    File dir = new File(args.tezConfDir);
    if (!new File(dir, "tez-site.xml").isFile()) {
      throw new UsageException("--tez-conf-dir " + dir + " has no tez-site.xml");
    }
    TezConfiguration conf = new TezConfiguration();
    for (String name : SITE_FILES) {
      File f = new File(dir, name);
      if (f.isFile()) {
        conf.addResource(new Path(f.getAbsoluteFile().toURI()));
      }
    }
    conf.setBoolean(TezConfiguration.TEZ_LOCAL_MODE, false);
    if (args.fsDefault != null) {
      conf.set(FileSystem.FS_DEFAULT_NAME_KEY, args.fsDefault);
    }
    if (args.stagingDir != null) {
      conf.set(TezConfiguration.TEZ_AM_STAGING_DIR, args.stagingDir);
    }
    // Found again by this tag if the run is killed too hard to clean up (see YarnApps).
    conf.set(TezConfiguration.TEZ_APPLICATION_TAGS, YarnApps.tag(args.name));
    // The AM and the tasks are JVMs of their own: they need the Java 17 flags too.
    appendOpts(conf, TezConfiguration.TEZ_AM_LAUNCH_CMD_OPTS,
        TezConfiguration.TEZ_AM_LAUNCH_CMD_OPTS_DEFAULT);
    appendOpts(conf, TezConfiguration.TEZ_TASK_LAUNCH_CMD_OPTS,
        TezConfiguration.TEZ_TASK_LAUNCH_CMD_OPTS_DEFAULT);
    if (conf.getTrimmed(TezConfiguration.TEZ_LIB_URIS, "").isEmpty()
        && !conf.getBoolean(TezConfiguration.TEZ_IGNORE_LIB_URIS, false)) {
      throw new UsageException("tez.lib.uris is not set in " + dir + "/tez-site.xml");
    }
    return conf;
  }

  /** Flags Hadoop and Tez need on Java 17 in every JVM (the AM hangs without the first). */
  static final String JAVA17_OPENS = String.join(" ",
      "--add-opens=java.base/java.lang=ALL-UNNAMED",
      "--add-opens=java.base/java.util=ALL-UNNAMED",
      "--add-opens=java.base/java.io=ALL-UNNAMED",
      "--add-opens=java.base/java.nio=ALL-UNNAMED",
      "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
      "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
      "--add-opens=java.base/java.net=ALL-UNNAMED",
      "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
      "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED");

  private static void appendOpts(Configuration conf, String key, String fallback) {
    String opts = conf.get(key, fallback);
    if (!opts.contains("--add-opens=java.base/java.lang=")) {
      conf.set(key, (opts + " " + JAVA17_OPENS).trim());
    }
  }

  /** The output must not exist (unless --overwrite); the input must exist. */
  static void checkPaths(RunnerArgs args, Configuration conf)
      throws IOException, UsageException {
    Path out = new Path(args.output);
    FileSystem outFs = out.getFileSystem(conf);
    if (outFs.exists(out)) {
      if (!args.overwrite) {
        throw new UsageException("output " + outFs.makeQualified(out)
            + " already exists (use --overwrite to replace it)");
      }
      if (!outFs.delete(out, true)) {
        throw new IOException("cannot delete existing output " + out);
      }
    }
    if (args.input != null) {
      for (String p : args.input.split(",")) {
        Path in = new Path(p.trim());
        FileSystem inFs = in.getFileSystem(conf);
        FileStatus[] matches = inFs.globStatus(in);
        if (matches == null || matches.length == 0) {
          throw new UsageException("input " + inFs.makeQualified(in) + " does not exist");
        }
      }
    }
  }

  /**
   * The output did not exist before the run (see {@link #checkPaths}); what an uncommitted run
   * leaves there (an empty directory, perhaps temporary files) is removed so that a failed run
   * leaves nothing behind. Never contains _SUCCESS: outputs are committed only on success.
   */
  static void removeFailedOutput(RunnerArgs args, Configuration conf) {
    try {
      Path out = new Path(args.output);
      FileSystem fs = out.getFileSystem(conf);
      if (fs.exists(out)) {
        fs.delete(out, true);
      }
    } catch (IOException e) {
      System.err.println("DagRunner: warning: cannot remove output of the failed run: " + e);
    }
  }

  /**
   * On YARN the AM and the tasks need this jar: upload it (content-addressed) to the staging
   * directory and localize it.
   */
  static Map<String, LocalResource> shipOwnJar(TezConfiguration conf) throws Exception {
    File jar = new File(DagRunner.class.getProtectionDomain().getCodeSource().getLocation().toURI());
    if (!jar.isFile()) {
      throw new IOException("not running from a jar (" + jar + "); build with mvn package");
    }
    MessageDigest sha = MessageDigest.getInstance("SHA-256");
    try (InputStream in = Files.newInputStream(jar.toPath())) {
      byte[] buf = new byte[1 << 16];
      for (int n; (n = in.read(buf)) > 0; ) {
        sha.update(buf, 0, n);
      }
    }
    String hash = HexFormat.of().formatHex(sha.digest()).substring(0, 16);
    String stagingRoot = conf.get(TezConfiguration.TEZ_AM_STAGING_DIR,
        TezConfiguration.TEZ_AM_STAGING_DIR_DEFAULT);
    FileSystem fs = new Path(stagingRoot).getFileSystem(conf);
    Path dst = fs.makeQualified(new Path(stagingRoot, "tidepool-tez-" + hash + ".jar"));
    if (!fs.exists(dst)) {
      fs.copyFromLocalFile(false, true, new Path(jar.getAbsoluteFile().toURI()), dst);
    }
    FileStatus st = fs.getFileStatus(dst);
    LocalResource res = LocalResource.newInstance(URL.fromPath(dst), LocalResourceType.FILE,
        LocalResourceVisibility.APPLICATION, st.getLen(), st.getModificationTime());
    return Map.of("tidepool-tez.jar", res);
  }

  void deleteTempDir() {
    if (tempDir == null) {
      return;
    }
    try (Stream<java.nio.file.Path> walk = Files.walk(tempDir.toPath())) {
      walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException | RuntimeException e) {
      System.err.println("DagRunner: warning: cannot delete " + tempDir + ": " + e);
    }
  }
}
