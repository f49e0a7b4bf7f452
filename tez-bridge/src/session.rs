//! A warm Tez session for one job: the DAG runner's `SessionRunner`, started once, takes one DAG
//! per request on stdin, so a run pays neither a JVM start nor an application master start.
//!
//! One request is one line of [`tez::dag_args`] joined by tabs; the answer is one stdout line,
//! `DAG_STATUS <state> <seconds>`, with diagnostics on stderr (the last lines are kept for
//! errors). The session ends when its stdin closes (the bridge dropped it, or died: the pipe
//! closes with the process), and its JVM is killed when the [`Session`] is dropped. On YARN the
//! session's application carries the job's tag ([`tez::yarn_tag`]), so a session whose bridge
//! was killed is found and killed like a one-shot run's DAG.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::job::{DagSpec, JobSpec};
use crate::scratch::Scratch;
use crate::tez::{self, TezError, TezRun};

/// Lines of the session's stderr kept for error reports.
const STDERR_TAIL: usize = 40;

/// How long a session may take to start (a JVM and an application master; on a busy YARN
/// cluster the AM may wait for a container).
pub const START_TIMEOUT: Duration = Duration::from_secs(300);

/// A running session; see the module docs.
#[derive(Debug)]
pub struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// The job, for killing its YARN application when the session is dropped.
    yarn: Option<JobSpec>,
    /// Dropped after the JVM: its temporary files live here.
    _scratch: Scratch,
}

impl Session {
    /// Whether the job's DAG can run on a session: the built-in DAGs can, a user's jar cannot
    /// (it runs its own main class).
    pub fn supports(job: &JobSpec) -> bool {
        !matches!(job.dag, DagSpec::User { .. })
    }

    /// Starts a session for `job` against the file system `default_fs` and waits until it takes
    /// requests (or fails, with the runner's last words).
    pub async fn start(job: &JobSpec, default_fs: &str) -> Result<Session, TezError> {
        let runner = tez::built_runner(job)?;
        // A session of an earlier bridge that was killed may still hold a YARN application.
        let left = tez::kill_yarn_apps(job)?;
        if !left.trim().is_empty() {
            tracing::warn!(job = %job.name, "killed what an earlier bridge left on YARN: {}", left.trim());
        }
        let scratch = Scratch::create().map_err(TezError::Scratch)?;
        let mut cmd = tez::jvm(job, scratch.path());
        cmd.arg("-cp").arg(tez::runner_classpath(job, &runner)).arg("dev.tidepool.tez.SessionRunner");
        // The session's name is the job's: on YARN it tags the application with the job.
        cmd.args(["--name", &job.name, "--fs-default", default_fs]);
        cmd.args(tez::cluster_args(job, scratch.path()));
        let mut child = tez::spawn_piped(&mut cmd, job)?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take()) else {
            unreachable!("all three streams are piped");
        };
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        tokio::spawn(keep_tail(stderr, tail.clone()));
        let mut session = Session {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            stderr: tail,
            yarn: job.tez.conf_dir.is_some().then(|| job.clone()),
            _scratch: scratch,
        };
        match tokio::time::timeout(START_TIMEOUT, session.stdout.next_line()).await {
            Ok(Ok(Some(line))) if line == "READY" => Ok(session),
            Ok(_) => Err(TezError::SessionEnded { diagnostics: session.diagnostics() }),
            Err(_) => Err(TezError::SessionStart { seconds: START_TIMEOUT.as_secs(), diagnostics: session.diagnostics() }),
        }
    }

    /// Runs the job's DAG over `input` into `output` on the session and waits for it. A DAG
    /// that fails is [`TezError::Failed`] and the session goes on; a session that is gone is
    /// [`TezError::SessionEnded`] (start a new one).
    pub async fn run(&mut self, job: &JobSpec, input: &str, output: &str) -> Result<TezRun, TezError> {
        let args = tez::dag_args(job, input, output);
        if let Some(bad) = args.iter().find(|a| a.contains(['\t', '\n', '\r'])) {
            return Err(TezError::Unsendable(bad.clone()));
        }
        let started = Instant::now();
        // Diagnostics are this DAG's alone.
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let mut request = args.join("\t");
        request.push('\n');
        let sent = async {
            self.stdin.write_all(request.as_bytes()).await?;
            self.stdin.flush().await
        };
        if sent.await.is_err() {
            return Err(self.ended().await);
        }
        let line = match self.stdout.next_line().await {
            Ok(Some(line)) => line,
            _ => return Err(self.ended().await),
        };
        let mut words = line.split(' ');
        match (words.next(), words.next()) {
            (Some("DAG_STATUS"), Some("SUCCEEDED")) => Ok(TezRun { seconds: started.elapsed().as_secs_f64(), stdout: line }),
            (Some("DAG_STATUS"), Some(state)) => {
                Err(TezError::Failed { status: format!("DAG {state}"), diagnostics: self.diagnostics() })
            }
            _ => Err(TezError::Failed { status: "an answer the bridge does not know".into(), diagnostics: line }),
        }
    }

    /// Whether the session's JVM is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The JVM's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The error for a session found gone, once its stderr is read to the end.
    async fn ended(&mut self) -> TezError {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        // Give the stderr reader a moment to take the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        TezError::SessionEnded { diagnostics: self.diagnostics() }
    }

    fn diagnostics(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // kill_on_drop ends the JVM; on YARN its application outlives it unless killed here.
        let _ = self.child.start_kill();
        if let Some(job) = &self.yarn {
            match tez::kill_yarn_apps(job) {
                Ok(killed) if !killed.trim().is_empty() => tracing::info!(job = %job.name, "session ended; killed on YARN: {}", killed.trim()),
                Ok(_) => {}
                Err(e) => tracing::warn!(job = %job.name, "session ended; could not kill its YARN application: {e}"),
            }
        }
    }
}

/// Keeps the last [`STDERR_TAIL`] lines of the session's stderr.
async fn keep_tail(stderr: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}
