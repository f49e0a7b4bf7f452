package dev.tidepool.tez;

import java.net.UnknownHostException;

/**
 * Tez local mode and MiniDFSCluster both call InetAddress.getLocalHost(), which fails when the
 * machine's host name does not resolve (common in containers). Explains the fix when that
 * happens.
 */
final class HostNames {
  private HostNames() {
  }

  /** A hint if {@code t} was caused by an unresolvable host name, else null. */
  static String hint(Throwable t) {
    for (Throwable c = t; c != null; c = c.getCause()) {
      if (c instanceof UnknownHostException) {
        String host = System.getenv().getOrDefault("HOSTNAME", "$(hostname)");
        return "hint: the host name does not resolve (" + c.getMessage() + "). Add it to "
            + "/etc/hosts, or give the JVM its own hosts file: printf '127.0.0.1 localhost "
            + host + "\\n' > FILE and run java with -Djdk.net.hosts.file=FILE";
      }
      if (c.getCause() == c) {
        break;
      }
    }
    return null;
  }
}
