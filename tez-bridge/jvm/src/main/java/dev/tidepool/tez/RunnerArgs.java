package dev.tidepool.tez;

import dev.tidepool.tez.agg.AggSpec;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/** Command-line arguments of {@link DagRunner}. */
final class RunnerArgs {
  static final String USAGE = String.join("\n",
      "usage: DagRunner --dag aggregate|enrich|fail --input PATH --output PATH [options]",
      "  --dag KIND            aggregate, enrich or fail",
      "  --input PATHS         JSON Lines input: directories (read recursively) or files,",
      "                        comma-separated, globs allowed; names starting with _ or .",
      "                        are skipped",
      "  --output PATH         output directory; must not exist (see --overwrite)",
      "  --fs-default URI      fs.defaultFS, e.g. hdfs://127.0.0.1:9000 or file:///",
      "                        (default file:/// in local mode, core-site.xml on YARN)",
      "  --group-by F1,F2      aggregate: group-by fields (dotted paths); may repeat",
      "  --agg SPEC            aggregate: count | sum:F | min:F | max:F | avg:F; may repeat",
      "                        (default: count)",
      "  --field NAME=EXPR     enrich: computed field; may repeat",
"  --where EXPR          aggregate, enrich: keep only records whose value makes EXPR",
      "                        truthy (a missing field gives null: dropped)",
      "  --name NAME           DAG / application name (default tidepool-<dag>)",
      "  --reducers N          aggregate: parallelism of the aggregate vertex (default 1)",
      "  --staging-dir PATH    Tez staging directory (default: a fresh local temp dir in",
      "                        local mode, deleted at exit)",
      "  --overwrite           delete the output directory first if it exists",
      "  --exit-on-stdin-eof   stop (kill the DAG, clean up, exit 1) when stdin reaches",
      "                        end-of-file: the parent holding the pipe is gone",
      "  --conf KEY=VALUE      extra Hadoop/Tez configuration; may repeat",
      "  --tez-conf-dir DIR    submit to YARN using DIR/{core,hdfs,yarn,mapred,tez}-site.xml",
      "                        instead of running in local mode",
      "exit status: 0 if the DAG SUCCEEDED; 2 if it did not, or for invalid arguments;",
      "1 for unexpected errors");

  enum Kind {
    AGGREGATE, ENRICH, FAIL
  }

  Kind dag;
  String input;
  String output;
  String fsDefault;
  final List<String> groupBy = new ArrayList<>();
  final List<AggSpec> aggs = new ArrayList<>();
  final List<String> fields = new ArrayList<>();
  String where;
  String name;
  int reducers = 1;
  String stagingDir;
  boolean overwrite;
  boolean exitOnStdinEof;
  final List<String[]> conf = new ArrayList<>();
  String tezConfDir;
  boolean help;

  /** Parses arguments; throws IllegalArgumentException with a user-facing message. */
  static RunnerArgs parse(String[] argv) {
    RunnerArgs a = new RunnerArgs();
    List<String> args = new ArrayList<>(Arrays.asList(argv));
    for (int i = 0; i < args.size(); i++) {
      String opt = args.get(i);
      String val = null;
      int eq = opt.indexOf('=');
      if (opt.startsWith("--") && eq > 0) {
        val = opt.substring(eq + 1);
        opt = opt.substring(0, eq);
      }
      switch (opt) {
        case "-h":
        case "--help":
          a.help = true;
          continue;
        case "--overwrite":
          if (val != null) {
            throw new IllegalArgumentException("--overwrite takes no value");
          }
          a.overwrite = true;
          continue;
        case "--exit-on-stdin-eof":
          if (val != null) {
            throw new IllegalArgumentException("--exit-on-stdin-eof takes no value");
          }
          a.exitOnStdinEof = true;
          continue;
        default:
          break;
      }
      if (!opt.startsWith("--")) {
        throw new IllegalArgumentException("unexpected argument '" + opt + "'");
      }
      if (val == null) {
        if (i + 1 >= args.size()) {
          throw new IllegalArgumentException(opt + " needs a value");
        }
        val = args.get(++i);
      }
      switch (opt) {
        case "--dag":
          try {
            a.dag = Kind.valueOf(val.toUpperCase(Locale.ROOT));
          } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("--dag must be aggregate, enrich or fail, not '"
                + val + "'");
          }
          break;
        case "--input":
          a.input = nonEmpty(opt, val);
          break;
        case "--output":
          a.output = nonEmpty(opt, val);
          break;
        case "--fs-default":
          a.fsDefault = nonEmpty(opt, val);
          break;
        case "--group-by":
          for (String f : val.split(",")) {
            String t = f.trim();
            if (t.isEmpty() || t.startsWith(".") || t.endsWith(".") || t.contains("..")) {
              throw new IllegalArgumentException("--group-by: bad field name in '" + val + "'");
            }
            a.groupBy.add(t);
          }
          break;
        case "--agg":
          a.aggs.add(AggSpec.parse(val));
          break;
        case "--field":
          a.fields.add(val);
          break;
        case "--where":
          if (a.where != null) {
            throw new IllegalArgumentException("--where given twice (combine with &&)");
          }
          a.where = nonEmpty(opt, val);
          break;
        case "--name":
          a.name = nonEmpty(opt, val);
          break;
        case "--reducers":
          try {
            a.reducers = Integer.parseInt(val);
          } catch (NumberFormatException e) {
            a.reducers = 0;
          }
          if (a.reducers < 1) {
            throw new IllegalArgumentException("--reducers must be a positive integer");
          }
          break;
        case "--staging-dir":
          a.stagingDir = nonEmpty(opt, val);
          break;
        case "--conf": {
          int e = val.indexOf('=');
          if (e <= 0) {
            throw new IllegalArgumentException("--conf expects KEY=VALUE, got '" + val + "'");
          }
          a.conf.add(new String[] {val.substring(0, e), val.substring(e + 1)});
          break;
        }
        case "--tez-conf-dir":
          a.tezConfDir = nonEmpty(opt, val);
          break;
        default:
          throw new IllegalArgumentException("unknown option " + opt);
      }
    }
    if (a.help) {
      return a;
    }
    if (a.dag == null) {
      throw new IllegalArgumentException("--dag is required");
    }
    if (a.output == null) {
      throw new IllegalArgumentException("--output is required");
    }
    if (a.input == null && a.dag != Kind.FAIL) {
      throw new IllegalArgumentException("--input is required");
    }
    if (a.dag != Kind.AGGREGATE && (!a.groupBy.isEmpty() || !a.aggs.isEmpty())) {
      throw new IllegalArgumentException("--group-by and --agg only apply to --dag aggregate");
    }
    if (a.dag != Kind.ENRICH && !a.fields.isEmpty()) {
      throw new IllegalArgumentException("--field only applies to --dag enrich");
    }
    if (a.dag == Kind.FAIL && a.where != null) {
      throw new IllegalArgumentException("--where only applies to --dag aggregate and enrich");
    }
    if (a.dag == Kind.ENRICH && a.fields.isEmpty()) {
      throw new IllegalArgumentException("--dag enrich needs at least one --field NAME=EXPR");
    }
    if (a.dag == Kind.AGGREGATE && a.aggs.isEmpty()) {
      a.aggs.add(AggSpec.count());
    }
    if (a.name == null) {
      a.name = "tidepool-" + a.dag.name().toLowerCase(Locale.ROOT);
    }
    return a;
  }

  private static String nonEmpty(String opt, String val) {
    if (val.trim().isEmpty()) {
      throw new IllegalArgumentException(opt + " must not be empty");
    }
    return val;
  }
}
