//! Launching Tez: the DAG runner (or a user's jar) as a JVM process, in local mode unless the job
//! names a Tez configuration directory (then it submits to YARN).
//!
//! The JVM dies with the bridge: it is killed when the run is dropped (a signal, an error), and
//! the DAG runner exits by itself when its stdin, a pipe only the bridge holds, closes (the
//! bridge was killed). Its temporary files go to a [`Scratch`] directory the bridge removes.
//!
//! On YARN the DAG runs in the cluster, not in that JVM: the runner tags the application with the
//! job ([`yarn_tag`]); a run dropped by a signal kills it, and a run that finds one left over (its
//! bridge and runner were killed with SIGKILL) kills it before submitting.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::job::{DagSpec, JobSpec};
use crate::scratch::Scratch;

/// JVM flags Hadoop and Tez need on Java 17.
pub const JAVA17_OPENS: &[&str] = &[
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
];

#[derive(Debug, Error)]
pub enum TezError {
    #[error("cannot start {java}: {source}")]
    Spawn { java: String, source: std::io::Error },
    #[error("cannot create a scratch directory: {0}")]
    Scratch(std::io::Error),
    #[error("the DAG runner is not built: {0} is missing (run `make -C tez-bridge/jvm` or `make tez-jvm`)")]
    NotBuilt(PathBuf),
    #[error("the Tez session ended: {diagnostics}")]
    SessionEnded { diagnostics: String },
    #[error("the Tez session did not start within {seconds} s: {diagnostics}")]
    SessionStart { seconds: u64, diagnostics: String },
    #[error("a DAG argument holds a tab or a line break, which a session request cannot carry: {0:?}")]
    Unsendable(String),
    #[error("the Tez job failed (exit status {status}): {diagnostics}")]
    Failed { status: String, diagnostics: String },
}

/// What a finished Tez job reported.
#[derive(Debug)]
pub struct TezRun {
    pub seconds: f64,
    pub stdout: String,
}

/// The default runner build directory: `tez-bridge/jvm/target` of this source tree.
pub fn default_runner_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jvm/target")
}

pub(crate) fn java(job: &JobSpec) -> PathBuf {
    job.tez.java.clone().unwrap_or_else(|| match std::env::var_os("JAVA_HOME") {
        Some(home) => PathBuf::from(home).join("bin/java"),
        None => PathBuf::from("java"),
    })
}

/// The job's runner build directory, once its jar is known to be there.
pub(crate) fn built_runner(job: &JobSpec) -> Result<PathBuf, TezError> {
    let runner = job.tez.runner_dir.clone().unwrap_or_else(default_runner_dir);
    let jar = runner.join("tidepool-tez.jar");
    if !jar.exists() {
        return Err(TezError::NotBuilt(jar));
    }
    Ok(runner)
}

/// Starts a JVM command with stdin, stdout and stderr piped, killed if its handle is dropped.
pub(crate) fn spawn_piped(cmd: &mut Command, job: &JobSpec) -> Result<tokio::process::Child, TezError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| TezError::Spawn { java: java(job).display().to_string(), source })
}

/// The full command line for a job's DAG over `input`, writing `output`, with the JVM's
/// temporary files under `scratch`.
pub fn command(job: &JobSpec, default_fs: &str, input: &str, output: &str, scratch: &Path) -> Result<Command, TezError> {
    let runner = built_runner(job)?;
    let mut cmd = jvm(job, scratch);
    let mut classpath = runner_classpath(job, &runner);
    if let DagSpec::User { jar, .. } = &job.dag {
        classpath = format!("{}:{classpath}", jar.display());
    }
    cmd.arg("-cp").arg(classpath);
    match &job.dag {
        DagSpec::User { main_class, args, .. } => {
            // `{input}`, `{output}` and `{fs}` in the arguments are replaced; without them the
            // input and output paths are appended.
            let placed = args.iter().any(|a| a.contains("{input}") || a.contains("{output}"));
            let args = args.iter().map(|a| a.replace("{input}", input).replace("{output}", output).replace("{fs}", default_fs));
            cmd.arg(main_class).args(args);
            if !placed {
                cmd.arg(input).arg(output);
            }
        }
        _ => {
            cmd.arg("dev.tidepool.tez.DagRunner");
            cmd.args(dag_args(job, input, output));
            cmd.args(["--fs-default", default_fs, "--exit-on-stdin-eof"]);
            cmd.args(cluster_args(job, scratch));
        }
    }
    Ok(cmd)
}

/// The JVM with the job's options. Everything it would put in /tmp (Tez local mode's scratch
/// space, snappy-java's native library, which a halting JVM never deletes) goes to `scratch`.
pub(crate) fn jvm(job: &JobSpec, scratch: &Path) -> Command {
    let mut cmd = Command::new(java(job));
    let tmp = scratch.display();
    cmd.args(JAVA17_OPENS)
        .arg(format!("-Djava.io.tmpdir={tmp}"))
        .arg(format!("-Dorg.xerial.snappy.tempdir={tmp}"))
        .args(&job.tez.jvm_opts);
    if std::env::var_os("USER").is_none() {
        cmd.env("USER", "tidepool");
    }
    cmd
}

/// The runner's jar and its libraries, after the cluster configuration (first, so that
/// tez-site.xml and yarn-site.xml load from it).
pub(crate) fn runner_classpath(job: &JobSpec, runner: &Path) -> String {
    let classpath = format!("{}:{}", runner.join("tidepool-tez.jar").display(), runner.join("lib/*").display());
    match &job.tez.conf_dir {
        Some(conf) => format!("{}:{classpath}", conf.display()),
        None => classpath,
    }
}

/// Where the runner submits: YARN (the job's configuration directory, staging next to the job's
/// runs on HDFS, not in the cluster's default, which the bridge's user may not own) or local
/// mode (Hadoop's scratch under `scratch`; its own default is /tmp/hadoop-<user>).
pub(crate) fn cluster_args(job: &JobSpec, scratch: &Path) -> Vec<String> {
    match &job.tez.conf_dir {
        Some(conf) => vec!["--tez-conf-dir".into(), conf.display().to_string(), "--staging-dir".into(), staging_dir(job)],
        None => vec!["--conf".into(), format!("hadoop.tmp.dir={}", scratch.join("hadoop").display())],
    }
}

/// The arguments naming one built-in DAG over `input` into `output`, as both the one-shot
/// runner and a session request take them. Empty for a user's jar.
pub fn dag_args(job: &JobSpec, input: &str, output: &str) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |a: &str| args.push(a.to_owned());
    match &job.dag {
        DagSpec::User { .. } => return Vec::new(),
        DagSpec::Aggregate { group_by, aggregates, .. } => {
            for a in ["--name", &job.name, "--input", input, "--output", output, "--dag", "aggregate"] {
                push(a);
            }
            // No group-by fields: one group, the totals over every record.
            if !group_by.is_empty() {
                push("--group-by");
                push(&group_by.join(","));
            }
            for a in aggregates {
                push("--agg");
                push(a);
            }
        }
        DagSpec::Enrich { fields, .. } => {
            for a in ["--name", &job.name, "--input", input, "--output", output, "--dag", "enrich"] {
                push(a);
            }
            for (name, expr) in fields {
                push("--field");
                push(&format!("{name}={expr}"));
            }
        }
    }
    if let Some(filter) = job.dag.filter() {
        args.extend(["--where".to_owned(), filter.to_owned()]);
    }
    args
}

/// Where a YARN run stages its files: `<base>/_tez-staging`.
pub fn staging_dir(job: &JobSpec) -> String {
    format!("{}/_tez-staging", job.base.trim_end_matches('/'))
}

/// The YARN application tag of a job's DAGs (the DAG runner sets it; YARN lower-cases tags).
pub fn yarn_tag(job: &JobSpec) -> String {
    format!("tidepool-job-{}", job.name.to_lowercase())
}

/// Kills the job's unfinished YARN applications (found by [`yarn_tag`]) through the DAG runner's
/// `YarnApps`, waiting for it; returns what it printed. Nothing to do in local mode.
pub fn kill_yarn_apps(job: &JobSpec) -> Result<String, TezError> {
    let Some(conf) = &job.tez.conf_dir else { return Ok(String::new()) };
    let runner = built_runner(job)?;
    let java = java(job);
    let out = std::process::Command::new(&java)
        .args(JAVA17_OPENS)
        .arg("-cp")
        .arg(format!("{}:{}", runner.join("tidepool-tez.jar").display(), runner.join("lib/*").display()))
        .arg("dev.tidepool.tez.YarnApps")
        .arg(conf)
        .arg("kill")
        .arg(yarn_tag(job))
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TezError::Spawn { java: java.display().to_string(), source })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(TezError::Failed { status: out.status.to_string(), diagnostics: String::from_utf8_lossy(&out.stderr).into_owned() });
    }
    Ok(text)
}

/// On YARN a DAG outlives the runner's JVM: if a run ends without the runner exiting (a signal
/// dropped it), kill the job's applications before going on.
struct KillOnYarn<'a> {
    job: &'a JobSpec,
    armed: bool,
}

impl Drop for KillOnYarn<'_> {
    fn drop(&mut self) {
        if self.armed {
            match kill_yarn_apps(self.job) {
                Ok(killed) => tracing::warn!(job = %self.job.name, "interrupted; killed on YARN: {}", killed.trim()),
                Err(e) => tracing::warn!(job = %self.job.name, "interrupted; could not kill its YARN applications: {e}"),
            }
        }
    }
}

/// Runs the job's DAG and waits for it; an error unless the JVM exits with success.
/// Dropping the future kills the JVM and removes its scratch directory.
pub async fn run(job: &JobSpec, default_fs: &str, input: &str, output: &str) -> Result<TezRun, TezError> {
    crate::scratch::sweep();
    // A run killed with SIGKILL (its runner too) may have left its DAG running on YARN.
    let left = kill_yarn_apps(job)?;
    if !left.trim().is_empty() {
        tracing::warn!(job = %job.name, "killed what an earlier run left on YARN: {}", left.trim());
    }
    let scratch = Scratch::create().map_err(TezError::Scratch)?;
    let mut cmd = command(job, default_fs, input, output, scratch.path())?;
    let java = format!("{}", java(job).display());
    let started = Instant::now();
    let mut child = spawn_piped(&mut cmd, job)?;
    // Held, never written, until the JVM has exited: its end-of-file tells the runner that the
    // bridge is gone, however it ended.
    let _stdin = child.stdin.take();
    let mut guard = KillOnYarn { job, armed: job.tez.conf_dir.is_some() };
    let (mut out, mut err) = (String::new(), String::new());
    let (mut so, mut se) = (child.stdout.take(), child.stderr.take());
    let read_out = async {
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_string(&mut out).await;
        }
    };
    let read_err = async {
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_string(&mut err).await;
        }
    };
    tokio::join!(read_out, read_err);
    let status = child.wait().await.map_err(|source| TezError::Spawn { java, source })?;
    guard.armed = false;
    drop(scratch);
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        let diagnostics = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(TezError::Failed { status: status.to_string(), diagnostics });
    }
    Ok(TezRun { seconds, stdout: out })
}

/// How long a phase took, for the summary.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
