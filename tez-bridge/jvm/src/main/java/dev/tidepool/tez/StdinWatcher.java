package dev.tidepool.tez;

import java.io.IOException;
import java.io.InputStream;

/**
 * Runs an action when an input stream reaches end-of-file. The bridge holds the only write end
 * of the runner's stdin and never writes to it: end-of-file means the bridge is gone (killed,
 * even with SIGKILL), and the runner must not outlive it.
 */
final class StdinWatcher {
  private StdinWatcher() {
  }

  /** Starts a daemon thread that drains {@code in} and runs {@code onEof} at its end. */
  static Thread watch(InputStream in, Runnable onEof) {
    Thread t = new Thread(() -> {
      byte[] buf = new byte[256];
      try {
        while (in.read(buf) >= 0) {
          // Input is ignored; only end-of-file matters.
        }
      } catch (IOException e) {
        // A broken pipe ends the conversation just as end-of-file does.
      }
      onEof.run();
    }, "stdin-watcher");
    t.setDaemon(true);
    t.start();
    return t;
  }
}
