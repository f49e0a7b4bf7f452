//! Real processes for tests, benchmarks and the end-to-end test: the JVM's `HdfsTestCluster` (a
//! MiniDFSCluster), and any server that announces its address on a stdout line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::tez::JAVA17_OPENS;

/// A child process, killed and reaped when dropped, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits for its stdout line starting with `prefix`; returns the rest of that
/// line, trimmed. Stdout keeps being drained afterwards, so the child never blocks on a full
/// pipe; stderr is inherited. Panics if the process exits first (this is test support).
pub fn start_announced(mut cmd: Command, prefix: &str) -> (Running, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let Some(stdout) = child.stdout.take() else { unreachable!("stdout is piped") };
    let running = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let found = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix(prefix) {
                    break rest.trim().to_owned();
                }
            }
            _ => panic!("{cmd:?} exited before printing {prefix:?}"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (running, found)
}

/// Starts a MiniDFSCluster with its data under `base`, from the DAG runner's build directory
/// (`tidepool-tez.jar` and `lib/`); returns it and its `hdfs://127.0.0.1:PORT` address. It stops
/// when dropped (or when its stdin closes).
pub fn hdfs(runner_dir: &Path, base: &Path) -> (Running, String) {
    let cp = format!("{}:{}", runner_dir.join("tidepool-tez.jar").display(), runner_dir.join("lib/*").display());
    let mut cmd = Command::new("java");
    cmd.args(JAVA17_OPENS).arg(tmp_dir(base)).arg("-cp").arg(cp).arg("dev.tidepool.tez.HdfsTestCluster").arg(base);
    start_announced(cmd, "READY ")
}

/// `-Djava.io.tmpdir=` a directory under `base`: the clusters' web servers (Jetty) unpack into
/// the JVM's temporary directory, and a cluster killed when dropped never removes what it put
/// there, so it goes where the cluster's own files go and is removed with them.
fn tmp_dir(base: &Path) -> String {
    let dir = base.join("jvm-tmp");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    format!("-Djava.io.tmpdir={}", dir.display())
}

/// Starts the JVM's `YarnTestCluster` (a MiniDFSCluster with two DataNodes and a MiniTezCluster
/// with two NodeManagers) with its files under `base`; returns it, the configuration directory a
/// job's `[tez] conf_dir` points at, and the `hdfs://127.0.0.1:PORT` address. Needs the DAG
/// runner's test build (`target/test-classes`, `target/test-lib`). Stops when dropped.
pub fn yarn(runner_dir: &Path, base: &Path) -> (Running, std::path::PathBuf, String) {
    std::fs::create_dir_all(base).unwrap_or_else(|e| panic!("cannot create {}: {e}", base.display()));
    let cp = format!(
        "{}:{}:{}",
        runner_dir.join("test-classes").display(),
        runner_dir.join("tidepool-tez.jar").display(),
        runner_dir.join("test-lib/*").display()
    );
    let mut cmd = Command::new("java");
    // MiniYARNCluster keeps its files under ./target: run it in `base`.
    cmd.current_dir(base).args(JAVA17_OPENS).arg(tmp_dir(base)).arg("-cp").arg(cp).arg("dev.tidepool.tez.YarnTestCluster").arg(base);
    let (running, line) = start_announced(cmd, "READY ");
    let Some((conf, hdfs)) = line.split_once(' ') else { panic!("YarnTestCluster printed {line:?}") };
    (running, conf.into(), hdfs.to_owned())
}
