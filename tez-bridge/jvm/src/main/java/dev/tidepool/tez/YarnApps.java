package dev.tidepool.tez;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.yarn.api.records.ApplicationReport;
import org.apache.hadoop.yarn.api.records.ApplicationResourceUsageReport;
import org.apache.hadoop.yarn.api.records.YarnApplicationState;
import org.apache.hadoop.yarn.client.api.YarnClient;
import org.apache.hadoop.yarn.conf.YarnConfiguration;

import java.io.File;
import java.io.PrintStream;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * The YARN applications of a Tidepool job, found by their tag ({@link #tag}):
 * {@code YarnApps CONF_DIR list|kill TAG}.
 *
 * <p>{@code list} prints one line per application,
 * {@code APP <id> <state> <final status> <memory-MB-seconds> <name>}; {@code kill} kills those
 * that have not finished and prints {@code KILLED <id>} for each. The bridge kills what a run
 * killed with SIGKILL left running; tests check that a DAG really ran on YARN.
 */
public final class YarnApps {
  private static final String[] SITE_FILES = {"core-site.xml", "hdfs-site.xml", "yarn-site.xml"};
  private static final EnumSet<YarnApplicationState> UNFINISHED = EnumSet.of(
      YarnApplicationState.NEW, YarnApplicationState.NEW_SAVING, YarnApplicationState.SUBMITTED,
      YarnApplicationState.ACCEPTED, YarnApplicationState.RUNNING);

  private YarnApps() {
  }

  /** The tag of a job's applications (YARN lower-cases tags). */
  static String tag(String job) {
    return "tidepool-job-" + job.toLowerCase(Locale.ROOT);
  }

  public static void main(String[] args) throws Exception {
    PrintStream stdout = System.out;
    System.setOut(System.err);
    if (args.length != 3 || !(args[1].equals("list") || args[1].equals("kill"))) {
      System.err.println("usage: YarnApps CONF_DIR list|kill TAG");
      System.exit(2);
    }
    Configuration conf = new YarnConfiguration();
    for (String name : SITE_FILES) {
      File f = new File(args[0], name);
      if (f.isFile()) {
        conf.addResource(new Path(f.getAbsoluteFile().toURI()));
      }
    }
    String tag = args[2].toLowerCase(Locale.ROOT);
    YarnClient yarn = YarnClient.createYarnClient();
    yarn.init(conf);
    yarn.start();
    try {
      boolean kill = args[1].equals("kill");
      List<ApplicationReport> apps =
          yarn.getApplications(null, kill ? UNFINISHED : null, Set.of(tag));
      for (ApplicationReport app : apps) {
        if (kill) {
          yarn.killApplication(app.getApplicationId());
          stdout.println("KILLED " + app.getApplicationId());
        } else {
          ApplicationResourceUsageReport usage = app.getApplicationResourceUsageReport();
          long mbSeconds = usage == null ? 0 : usage.getMemorySeconds();
          stdout.println("APP " + app.getApplicationId() + " " + app.getYarnApplicationState()
              + " " + app.getFinalApplicationStatus() + " " + mbSeconds + " " + app.getName());
        }
      }
    } finally {
      stdout.flush();
      yarn.stop();
    }
    Runtime.getRuntime().halt(0);
  }
}
