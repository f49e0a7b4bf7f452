package dev.tidepool.tez;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.DFSConfigKeys;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.yarn.api.records.ApplicationReport;
import org.apache.hadoop.yarn.api.records.YarnApplicationState;
import org.apache.hadoop.yarn.client.api.YarnClient;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.log4j.Level;
import org.apache.log4j.LogManager;
import org.apache.tez.dag.api.TezConfiguration;
import org.apache.tez.test.MiniTezCluster;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.util.EnumSet;
import java.util.Map;

/**
 * A YARN cluster for tests and benchmarks: {@code YarnTestCluster BASE_DIR}, started with BASE_DIR
 * as the working directory (MiniYARNCluster keeps its files under ./target).
 *
 * <p>A MiniDFSCluster with two DataNodes and a MiniTezCluster (MiniYARNCluster with Tez's
 * settings: tez.lib.uris, staging, no memory checks) with two NodeManagers, everything on
 * 127.0.0.1 with system-chosen ports. Writes {@code BASE_DIR/conf/{core,hdfs,yarn,tez}-site.xml}
 * for clients, prints {@code READY <conf dir> hdfs://127.0.0.1:<port>}, and runs until stdin
 * reaches end-of-file; then kills what still runs on YARN, stops both clusters and exits 0.
 * Containers run with this JVM's classpath (as on a cluster whose classpath carries Hadoop, Tez
 * and their dependencies); the Java 17 flags they need are the client's to pass.
 */
public final class YarnTestCluster {
  private YarnTestCluster() {
  }

  public static void main(String[] args) throws Exception {
    PrintStream stdout = System.out;
    System.setOut(System.err);
    if (args.length != 1) {
      System.err.println("usage: YarnTestCluster BASE_DIR");
      System.exit(2);
    }
    File base = new File(args[0]).getAbsoluteFile();
    File confDir = new File(base, "conf");
    if (!confDir.isDirectory() && !confDir.mkdirs()) {
      System.err.println("YarnTestCluster: cannot create " + confDir);
      System.exit(2);
    }

    Configuration conf = new HdfsConfiguration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, new File(base, "dfs").getPath());
    conf.setBoolean(DFSConfigKeys.DFS_PERMISSIONS_ENABLED_KEY, false);
    conf.setInt(DFSConfigKeys.DFS_REPLICATION_KEY, 2);
    conf.set(DFSConfigKeys.DFS_DATANODE_HOST_NAME_KEY, "127.0.0.1");
    conf.setBoolean(DFSConfigKeys.DFS_CLIENT_USE_DN_HOSTNAME, false);
    conf.setBoolean(DFSConfigKeys.DFS_DATANODE_USE_DN_HOSTNAME, false);
    conf.setBoolean(DFSConfigKeys.DFS_NAMENODE_DATANODE_REGISTRATION_IP_HOSTNAME_CHECK_KEY, false);
    conf.setLong(DFSConfigKeys.DFS_NAMENODE_DU_RESERVED_KEY, 0L);
    conf.setLong(DFSConfigKeys.DFS_DATANODE_DU_RESERVED_KEY, 0L);
    MiniDFSCluster dfs = new MiniDFSCluster.Builder(conf, new File(base, "dfs"))
        .numDataNodes(2)
        .nameNodePort(0)
        .nameNodeHttpPort(0)
        .format(true)
        .build();
    dfs.waitActive();
    String hdfs = "hdfs://127.0.0.1:" + dfs.getNameNodePort();
    FileSystem fs = dfs.getFileSystem();
    fs.setPermission(new Path("/"), new FsPermission((short) 0777));
    fs.mkdirs(new Path("/tmp"));
    fs.setPermission(new Path("/tmp"), new FsPermission((short) 01777));

    Configuration yarnConf = new YarnConfiguration(new Configuration(conf));
    yarnConf.set(FileSystem.FS_DEFAULT_NAME_KEY, hdfs);
    yarnConf.set(YarnConfiguration.RM_HOSTNAME, "127.0.0.1");
    yarnConf.set(YarnConfiguration.NM_ADDRESS, "127.0.0.1:0");
    yarnConf.set(YarnConfiguration.NM_LOCALIZER_ADDRESS, "127.0.0.1:0");
    yarnConf.set(YarnConfiguration.NM_WEBAPP_ADDRESS, "127.0.0.1:0");
    // Small containers: the machine runs this cluster next to everything else.
    yarnConf.setInt(YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB, 128);
    yarnConf.setInt(YarnConfiguration.NM_PMEM_MB, 4096);
    // A client that cannot reach the ResourceManager gives up after seconds, not 15 minutes.
    yarnConf.setLong(YarnConfiguration.RESOURCEMANAGER_CONNECT_MAX_WAIT_MS, 20_000);
    yarnConf.setLong(YarnConfiguration.RESOURCEMANAGER_CONNECT_RETRY_INTERVAL_MS, 1_000);
    // Disk health checks off: small or full test volumes must not mark the nodes unhealthy.
    yarnConf.setBoolean(YarnConfiguration.NM_DISK_HEALTH_CHECK_ENABLE, false);
    yarnConf.setFloat(
        YarnConfiguration.NM_MAX_PER_DISK_UTILIZATION_PERCENTAGE, 100.0f);
    yarnConf.setInt(TezConfiguration.TEZ_AM_RESOURCE_MEMORY_MB, 512);
    yarnConf.setInt(TezConfiguration.TEZ_TASK_RESOURCE_MEMORY_MB, 512);
    MiniTezCluster tez = new MiniTezCluster("tidepool", 2, 1, 1);
    tez.init(yarnConf);
    tez.start();

    // Written after start: the cluster's configuration now holds the ResourceManager's ports,
    // tez.lib.uris and the application classpath.
    Configuration live = tez.getConfig();
    write(new File(confDir, "yarn-site.xml"), live);
    Configuration core = new Configuration(false);
    core.set(FileSystem.FS_DEFAULT_NAME_KEY, hdfs);
    write(new File(confDir, "core-site.xml"), core);
    Configuration hdfsSite = new Configuration(false);
    hdfsSite.setInt(DFSConfigKeys.DFS_REPLICATION_KEY, 2);
    write(new File(confDir, "hdfs-site.xml"), hdfsSite);
    Configuration tezSite = new Configuration(false);
    for (Map.Entry<String, String> e : live) {
      if (e.getKey().startsWith("tez.")) {
        tezSite.set(e.getKey(), e.getValue());
      }
    }
    write(new File(confDir, "tez-site.xml"), tezSite);

    Runnable stop = () -> {
      LogManager.getRootLogger().setLevel(Level.OFF);
      killRunning(live);
      tez.stop();
      dfs.shutdown();
    };
    stdout.println("READY " + confDir + " " + hdfs);
    stdout.flush();
    InputStream in = System.in;
    byte[] buf = new byte[4096];
    while (in.read(buf) >= 0) {
      // Input is ignored; only end-of-file matters.
    }
    stop.run();
    Runtime.getRuntime().halt(0);
  }

  private static void write(File f, Configuration c) throws IOException {
    try (OutputStream out = new FileOutputStream(f)) {
      c.writeXml(out);
    }
  }

  /** MiniTezCluster waits for running applications before stopping: end them first. */
  private static void killRunning(Configuration conf) {
    YarnClient yarn = YarnClient.createYarnClient();
    yarn.init(conf);
    yarn.start();
    try {
      for (ApplicationReport app : yarn.getApplications(EnumSet.of(YarnApplicationState.NEW,
          YarnApplicationState.NEW_SAVING, YarnApplicationState.SUBMITTED,
          YarnApplicationState.ACCEPTED, YarnApplicationState.RUNNING))) {
        yarn.killApplication(app.getApplicationId());
      }
    } catch (Exception e) {
      System.err.println("YarnTestCluster: cannot kill running applications: " + e);
    } finally {
      yarn.stop();
    }
  }
}
