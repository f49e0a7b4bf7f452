//! Job files: what a job snapshots, which DAG it runs, and where results go (TOML).
//!
//! ```toml
//! name = "todo-stats"
//! hub = "ws://127.0.0.1:8080/v1/sync"
//! token_file = "bridge.token"        # or: token = "..."
//! db = "app"
//! store = "todos"
//! base = "hdfs://127.0.0.1:9000/tidepool"   # or a local directory
//! incremental = false
//!
//! [dag]
//! kind = "aggregate"                 # aggregate | enrich | user
//! group_by = ["project"]
//! aggregates = ["count", "sum:hours", "avg:hours"]
//! results_store = "todo_stats"
//! where = "!done && hours > 0"      # optional, aggregate and enrich: records the DAG sees
//!
//! [timeouts]                         # optional, in seconds
//! hub_connect = 10                   # give up on an unreachable hub after this long
//! hdfs_connect = 20                  # ... and on an unreachable HDFS namenode
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// A job as its TOML file describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    pub hub: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    pub db: String,
    pub store: String,
    /// Where runs live: `hdfs://host:port/path` or a local directory.
    pub base: String,
    /// Snapshot only what changed since the last written-back run (deletions included).
    #[serde(default)]
    pub incremental: bool,
    pub dag: DagSpec,
    #[serde(default)]
    pub tez: TezSpec,
    #[serde(default)]
    pub timeouts: Timeouts,
}

/// How long a run waits for what it cannot do without, before failing with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Seconds to wait for the first connection to the hub (a bad URL fails at once).
    #[serde(default = "Timeouts::default_hub_connect")]
    pub hub_connect: f64,
    /// Seconds to wait for the HDFS namenode's first answer.
    #[serde(default = "Timeouts::default_hdfs_connect")]
    pub hdfs_connect: f64,
}

impl Timeouts {
    fn default_hub_connect() -> f64 {
        10.0
    }

    fn default_hdfs_connect() -> f64 {
        20.0
    }

    pub fn hub(&self) -> Duration {
        Duration::try_from_secs_f64(self.hub_connect).unwrap_or(Duration::from_secs(10))
    }

    pub fn hdfs(&self) -> Duration {
        Duration::try_from_secs_f64(self.hdfs_connect).unwrap_or(Duration::from_secs(20))
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { hub_connect: Self::default_hub_connect(), hdfs_connect: Self::default_hdfs_connect() }
    }
}

/// The DAG a job runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DagSpec {
    /// Group by fields; count, sum, min, max, avg of others. Results become records of
    /// `results_store`, keyed by group.
    Aggregate {
        group_by: Vec<String>,
        aggregates: Vec<String>,
        results_store: String,
        /// A field every result record gets, holding when the results were computed: the time
        /// of the run's snapshot (RFC 3339, UTC), for apps that show how fresh their totals are.
        #[serde(default)]
        computed_at_field: Option<String>,
        /// Only records whose value makes this expression truthy count (see [`DagSpec::filter`]).
        #[serde(default, rename = "where")]
        filter: Option<String>,
    },
    /// New fields computed per record from expressions; results become fields on the same records.
    Enrich {
        fields: BTreeMap<String, String>,
        /// Only records whose value makes this expression truthy get the fields.
        #[serde(default, rename = "where")]
        filter: Option<String>,
    },
    /// Any jar and main class that takes the input and output paths (as its last two arguments, or
    /// where `{input}` and `{output}` appear in `args`; `{fs}` is the default file system) and
    /// writes enrich-shaped output (`{"key", "doc", "fields"}` lines).
    User {
        jar: PathBuf,
        main_class: String,
        #[serde(default)]
        args: Vec<String>,
    },
}

impl DagSpec {
    /// The job's `where`: an expression of the enrich language, evaluated on each record's value
    /// in the DAG's first vertex. A record passes when the result is truthy, so a missing field or
    /// a type mismatch (null) drops it. `user` DAGs filter themselves.
    pub fn filter(&self) -> Option<&str> {
        match self {
            DagSpec::Aggregate { filter, .. } | DagSpec::Enrich { filter, .. } => filter.as_deref(),
            DagSpec::User { .. } => None,
        }
    }
}

/// How Tez runs: local mode by default; with `conf_dir`, on the YARN cluster its tez-site.xml
/// names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TezSpec {
    #[serde(default)]
    pub conf_dir: Option<PathBuf>,
    /// The `java` executable (default: `$JAVA_HOME/bin/java`, else `java`).
    #[serde(default)]
    pub java: Option<PathBuf>,
    /// The DAG runner's build directory, holding `tidepool-tez.jar` and `lib/`.
    #[serde(default)]
    pub runner_dir: Option<PathBuf>,
    /// Extra JVM options.
    #[serde(default)]
    pub jvm_opts: Vec<String>,
}

#[derive(Debug, Error)]
pub enum JobError {
    #[error("cannot read job file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("job file {path} is invalid: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("job {0}: give exactly one of `token` and `token_file`")]
    Token(String),
    #[error("job {job}: cannot read token file {path}: {source}")]
    TokenFile { job: String, path: PathBuf, source: std::io::Error },
    #[error("job {job}: base {base:?} is not an hdfs:// location, but [tez] conf_dir submits to YARN, whose containers cannot read this machine's files; use an hdfs:// base")]
    LocalBaseOnYarn { job: String, base: String },
    #[error("job name {0:?} must be non-empty and use only letters, digits, '-', '_' and '.'")]
    Name(String),
}

impl JobSpec {
    /// Reads a job file; relative paths in it are relative to the file's directory.
    pub fn load(path: &Path) -> Result<JobSpec, JobError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| JobError::Read { path: path.to_owned(), source })?;
        let mut spec: JobSpec =
            toml::from_str(&text).map_err(|source| JobError::Parse { path: path.to_owned(), source })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(p) = spec.token_file.as_mut() {
            resolve(p);
        }
        if let DagSpec::User { jar, .. } = &mut spec.dag {
            resolve(jar);
        }
        if let Some(p) = spec.tez.runner_dir.as_mut() {
            resolve(p);
        }
        if let Some(p) = spec.tez.conf_dir.as_mut() {
            resolve(p);
        }
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<(), JobError> {
        let ok = !self.name.is_empty()
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(JobError::Name(self.name.clone()));
        }
        if self.token.is_some() == self.token_file.is_some() {
            return Err(JobError::Token(self.name.clone()));
        }
        if self.tez.conf_dir.is_some() && !self.base.starts_with("hdfs://") {
            return Err(JobError::LocalBaseOnYarn { job: self.name.clone(), base: self.base.clone() });
        }
        Ok(())
    }

    /// The bridge's token for the hub.
    pub fn token(&self) -> Result<String, JobError> {
        match (&self.token, &self.token_file) {
            (Some(t), None) => Ok(t.trim().to_owned()),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|t| t.trim().to_owned())
                .map_err(|source| JobError::TokenFile { job: self.name.clone(), path: path.clone(), source }),
            _ => Err(JobError::Token(self.name.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_dag_kind() {
        let spec: JobSpec = toml::from_str(
            r#"
            name = "stats"
            hub = "ws://h/v1/sync"
            token = "t"
            db = "app"
            store = "todos"
            base = "/tmp/x"
            [dag]
            kind = "aggregate"
            group_by = ["project"]
            aggregates = ["count", "sum:hours"]
            results_store = "stats"
            "#,
        )
        .unwrap();
        assert!(matches!(spec.dag, DagSpec::Aggregate { .. }));
        spec.validate().unwrap();
        let enrich: DagSpec = toml::from_str("kind = \"enrich\"\n[fields]\nscore = \"priority * 2\"\n").unwrap();
        assert!(matches!(enrich, DagSpec::Enrich { fields, .. } if fields["score"] == "priority * 2"));
        assert!(toml::from_str::<DagSpec>("kind = \"nope\"").is_err());
        assert_eq!(spec.dag.filter(), None);
        let filtered: DagSpec = toml::from_str("kind = \"enrich\"\nwhere = \"hours > 2\"\n[fields]\ns = \"1\"\n").unwrap();
        assert_eq!(filtered.filter(), Some("hours > 2"));
        let user = "kind = \"user\"\njar = \"j\"\nmain_class = \"M\"\nwhere = \"x\"\n";
        assert!(toml::from_str::<DagSpec>(user).unwrap_err().to_string().contains("where"), "user DAGs take no where");
        assert_eq!(spec.timeouts, Timeouts::default());
        let mut yarn = spec.clone();
        yarn.tez.conf_dir = Some("/etc/tez/conf".into());
        assert!(matches!(yarn.validate(), Err(JobError::LocalBaseOnYarn { .. })), "a local base cannot run on YARN");
        yarn.base = "hdfs://nn:8020/tidepool".into();
        yarn.validate().unwrap();
        let t: Timeouts = toml::from_str("hdfs_connect = 2.5").unwrap();
        assert_eq!((t.hub(), t.hdfs()), (Duration::from_secs(10), Duration::from_millis(2500)));
    }
}
