package dev.tidepool.tez;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.DFSConfigKeys;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.log4j.Level;
import org.apache.log4j.LogManager;
import sun.misc.Signal;

import java.io.File;
import java.io.InputStream;
import java.io.PrintStream;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A single-datanode HDFS for tests: {@code HdfsTestCluster BASE_DIR}.
 *
 * <p>Prints {@code READY hdfs://127.0.0.1:<port>} on stdout once the cluster accepts writes, then
 * runs until stdin reaches end-of-file, shuts the cluster down and exits 0. Everything listens on
 * 127.0.0.1 with system-chosen ports, and datanodes advertise 127.0.0.1, so clients that do not
 * resolve host names (hdfs-native) can reach them. Permission checks are off: any user name may
 * write anywhere.
 */
public final class HdfsTestCluster {
  private HdfsTestCluster() {
  }

  public static void main(String[] args) throws Exception {
    PrintStream stdout = System.out;
    System.setOut(System.err);
    if (args.length != 1) {
      System.err.println("usage: HdfsTestCluster BASE_DIR");
      System.exit(2);
    }
    File base = new File(args[0]).getAbsoluteFile();
    if (!base.isDirectory() && !base.mkdirs()) {
      System.err.println("HdfsTestCluster: cannot create " + base);
      System.exit(2);
    }

    Configuration conf = new HdfsConfiguration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, base.getPath());
    conf.setBoolean(DFSConfigKeys.DFS_PERMISSIONS_ENABLED_KEY, false);
    conf.setInt(DFSConfigKeys.DFS_REPLICATION_KEY, 1);
    conf.set(DFSConfigKeys.DFS_DATANODE_ADDRESS_KEY, "127.0.0.1:0");
    conf.set(DFSConfigKeys.DFS_DATANODE_HTTP_ADDRESS_KEY, "127.0.0.1:0");
    conf.set(DFSConfigKeys.DFS_DATANODE_IPC_ADDRESS_KEY, "127.0.0.1:0");
    conf.set(DFSConfigKeys.DFS_DATANODE_HOST_NAME_KEY, "127.0.0.1");
    conf.setBoolean(DFSConfigKeys.DFS_CLIENT_USE_DN_HOSTNAME, false);
    conf.setBoolean(DFSConfigKeys.DFS_DATANODE_USE_DN_HOSTNAME, false);
    // The only datanode is 127.0.0.1; do not insist that it reverse-resolves to a host name.
    conf.setBoolean(DFSConfigKeys.DFS_NAMENODE_DATANODE_REGISTRATION_IP_HOSTNAME_CHECK_KEY, false);
    // A test cluster is never on a full disk; do not enter safe mode on small tmpfs volumes.
    conf.setLong(DFSConfigKeys.DFS_NAMENODE_DU_RESERVED_KEY, 0L);
    conf.setLong(DFSConfigKeys.DFS_DATANODE_DU_RESERVED_KEY, 0L);

    MiniDFSCluster cluster;
    try {
      cluster = new MiniDFSCluster.Builder(conf, base)
          .numDataNodes(1)
          .storagesPerDatanode(1)
          .nameNodePort(0)
          .nameNodeHttpPort(0)
          .checkDataNodeAddrConfig(true)
          .checkDataNodeHostConfig(true)
          .format(true)
          .build();
    } catch (Exception e) {
      System.err.println("HdfsTestCluster: cannot start: " + e);
      e.printStackTrace(System.err);
      String hint = HostNames.hint(e);
      if (hint != null) {
        System.err.println("HdfsTestCluster: " + hint);
      }
      System.exit(1);
      return;
    }
    AtomicBoolean stopped = new AtomicBoolean();
    Runnable stop = () -> {
      if (stopped.compareAndSet(false, true)) {
        // Stopping daemons interrupts their threads, which log alarming but expected messages.
        LogManager.getRootLogger().setLevel(Level.OFF);
        cluster.shutdown();
      }
    };
    // Also stop cleanly on SIGTERM / SIGINT / SIGHUP. Not from a JVM shutdown hook: the DataNode
    // unregisters Hadoop shutdown hooks while stopping, which fails once the JVM is shutting down.
    for (String name : new String[] {"TERM", "INT", "HUP"}) {
      try {
        Signal.handle(new Signal(name), sig -> {
          stop.run();
          System.exit(0);
        });
      } catch (IllegalArgumentException unsupported) {
        // This signal cannot be handled here; end-of-file on stdin still works.
      }
    }
    cluster.waitActive();
    cluster.waitClusterUp();

    String uri = "hdfs://127.0.0.1:" + cluster.getNameNodePort();
    FileSystem fs = cluster.getFileSystem();
    fs.setPermission(new Path("/"), new FsPermission((short) 0777));
    fs.mkdirs(new Path("/tmp"));
    fs.setPermission(new Path("/tmp"), new FsPermission((short) 01777));

    stdout.println("READY " + uri);
    stdout.flush();

    InputStream in = System.in;
    byte[] buf = new byte[4096];
    while (in.read(buf) >= 0) {
      // Input is ignored; only end-of-file matters.
    }
    stop.run();
    System.exit(0);
  }
}
