package dev.tidepool.tez;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PipedInputStream;
import java.io.PipedOutputStream;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class StdinWatcherTest {
  @Test
  void runsTheActionAtEndOfFileOnly() throws Exception {
    PipedOutputStream parent = new PipedOutputStream();
    PipedInputStream stdin = new PipedInputStream(parent);
    CountDownLatch eof = new CountDownLatch(1);
    StdinWatcher.watch(stdin, eof::countDown);
    parent.write("ignored\n".getBytes());
    parent.flush();
    assertFalse(eof.await(200, TimeUnit.MILLISECONDS), "input alone must not stop the runner");
    parent.close();
    assertTrue(eof.await(5, TimeUnit.SECONDS), "end-of-file must stop the runner");
  }

  @Test
  void flagParses() {
    RunnerArgs a = RunnerArgs.parse(new String[] {"--dag", "fail", "--output", "o",
        "--exit-on-stdin-eof"});
    assertTrue(a.exitOnStdinEof);
    assertFalse(RunnerArgs.parse(new String[] {"--dag", "fail", "--output", "o"}).exitOnStdinEof);
  }
}
