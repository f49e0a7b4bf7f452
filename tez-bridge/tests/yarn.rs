//! The bridge on YARN: a MiniDFSCluster with two DataNodes and a MiniTezCluster with two
//! NodeManagers (`YarnTestCluster`), a hub process, and a job whose `[tez] conf_dir` points at the
//! cluster. One cluster start for every case: aggregate with `where` and enrich run as YARN
//! applications (checked through the YARN client and the NodeManagers' container directories),
//! results reach another client, a local base with `conf_dir` is refused, and an interrupted run
//! (SIGTERM; SIGKILL of the bridge and its runner, then `status`) leaves nothing on YARN. `watch`
//! runs its DAGs on a Tez session that is one YARN application for many runs, ended with the
//! bridge.

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_runner_built, bridge, client, field, hub, runner_dir, until, until_within, write_job_with, TIMEOUT};
use tidepool_core::{Key, StoreRef, Value, object};
use tidepool_tez_bridge::tez::JAVA17_OPENS;
use tidepool_tez_bridge::test_cluster;

/// `APP <id> <state> <final status> <MB-seconds> <name>` lines of a job's YARN applications.
fn yarn_apps(conf: &Path, job: &str) -> Vec<Vec<String>> {
    let runner = runner_dir();
    let out = Command::new("java")
        .args(JAVA17_OPENS)
        .arg("-cp")
        .arg(format!("{}:{}", runner.join("tidepool-tez.jar").display(), runner.join("lib/*").display()))
        .arg("dev.tidepool.tez.YarnApps")
        .arg(conf)
        .arg("list")
        .arg(format!("tidepool-job-{job}"))
        .output()
        .expect("YarnApps");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("APP "))
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect()
}

/// The NodeManager directories (under the cluster's files) holding a container of `app`.
fn container_dirs(base: &Path, app: &str) -> Vec<String> {
    let suffix = app.trim_start_matches("application_");
    let mut found = Vec::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                if name.starts_with("container_") && name.contains(suffix) {
                    found.push(dir.display().to_string());
                } else {
                    stack.push(e.path());
                }
            }
        }
    }
    found
}

/// Polls the job's applications until `done` holds (for up to three minutes); returns them.
fn wait_apps(conf: &Path, job: &str, what: &str, done: impl Fn(&[Vec<String>]) -> bool) -> Vec<Vec<String>> {
    for _ in 0..180 {
        let apps = yarn_apps(conf, job);
        if done(&apps) {
            return apps;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    panic!("timed out waiting for {what}: {:?}", yarn_apps(conf, job));
}

/// Starts `bridge run` for the job in a process group of its own, and returns it once the job's
/// application runs on YARN.
fn start_run_until_on_yarn(job: &Path, conf: &Path, name: &str, before: usize) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let child = Command::new(env!("CARGO_BIN_EXE_tidepool-bridge"))
        .args(["run", "--job", job.to_str().expect("path")])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("bridge");
    wait_apps(conf, name, "the application to run", |apps| apps.len() > before && apps.iter().any(|a| a[2] == "RUNNING"));
    child
}

fn signal(target: &str, sig: &str) {
    let ok = Command::new("kill").args([sig, "--", target]).status().expect("kill").success();
    assert!(ok, "kill {sig} {target}");
}

/// The job's last application: it ran on YARN and succeeded, using memory (its containers).
/// After its DAG succeeds the application master takes a moment to finish: wait for that.
fn ran_on_yarn(cluster: &Path, conf: &Path, job: &str) {
    let apps = wait_apps(conf, job, "the application to finish", |apps| apps.iter().all(|a| a[2] != "RUNNING" && a[2] != "ACCEPTED"));
    let app = apps.iter().max_by_key(|a| a[1].clone()).expect("an application");
    assert_eq!((app[2].as_str(), app[3].as_str()), ("FINISHED", "SUCCEEDED"), "{app:?}");
    assert!(app[4].parse::<u64>().expect("MB-seconds") > 0, "the application used containers: {app:?}");
    let dirs = container_dirs(cluster, &app[1]);
    assert!(dirs.len() >= 2 && dirs.iter().any(|d| d.contains("-nm-")), "the AM and task containers ran on the NodeManagers: {dirs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_and_enrich_on_yarn() {
    assert_runner_built();
    assert!(runner_dir().join("test-classes/dev/tidepool/tez/YarnTestCluster.class").exists(), "build the DAG runner first: make tez-jvm");
    let tmp = tempfile::tempdir().expect("tmp");
    let cluster_dir = tmp.path().join("yarn");
    let (_cluster, conf, namenode) = test_cluster::yarn(&runner_dir(), &cluster_dir);
    let (_hub, url) = hub(&tmp.path().join("hub"));
    let base = format!("{namenode}/tidepool");
    let todos = StoreRef::new("app", "todos");
    let stats = StoreRef::new("app", "stats");
    let on_yarn = format!("[tez]\nconf_dir = \"{}\"", conf.display());

    // A local base cannot work on YARN: refused at once, naming both.
    let job = write_job_with(tmp.path(), "local", &url, &tmp.path().join("runs").display().to_string(), "",
        &format!("kind = \"enrich\"\n[dag.fields]\nx = \"1\"\n\n{on_yarn}"));
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(!ok && out.contains("conf_dir") && out.contains("hdfs://"), "{out}");

    let user = client(&url, &[&todos, &stats]).await;
    for i in 0..40i64 {
        let v = object! { "project" => ["alpha", "beta"][(i % 2) as usize], "hours" => i, "done" => i % 3 == 0 };
        user.put(&todos, &Key::Number(i as f64), &v).expect("put");
    }
    user.wait_idle(TIMEOUT).await.expect("idle");

    let job = write_job_with(tmp.path(), "stats", &url, &base, "",
        &format!("kind = \"aggregate\"\ngroup_by = [\"project\"]\naggregates = [\"count\", \"sum:hours\"]\nresults_store = \"stats\"\nwhere = \"!done\"\n\n{on_yarn}"));
    // SIGTERM while the DAG runs on YARN: the bridge kills the application before it exits.
    let mut run = start_run_until_on_yarn(&job, &conf, "stats", 0);
    signal(&run.id().to_string(), "-TERM");
    let status = run.wait().expect("wait");
    assert_eq!(status.code(), Some(143), "{status:?}");
    let apps = wait_apps(&conf, "stats", "the interrupted application to be killed", |apps| apps.iter().all(|a| a[2] != "RUNNING"));
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0][2], "KILLED", "{apps:?}");
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(ok, "{out}");
    ran_on_yarn(&cluster_dir, &conf, "stats");
    let other = client(&url, &[&todos, &stats]).await;
    until("aggregate results on another client", || other.values(&stats).len() == 2).await;
    let (count, sum) = (0..40i64).filter(|i| i % 2 == 0 && i % 3 != 0).fold((0, 0), |(c, s), i| (c + 1, s + i));
    let alpha = other.get(&stats, &Key::from("alpha")).expect("get");
    assert_eq!(field(&alpha, "count"), Some(Value::Int(count)));
    assert_eq!(field(&alpha, "sum_hours"), Some(Value::Int(sum)));

    let job = write_job_with(tmp.path(), "double", &url, &base, "",
        &format!("kind = \"enrich\"\n[dag.fields]\ndouble = \"hours * 2\"\n\n{on_yarn}"));
    // SIGKILL of the bridge and the DAG runner leaves the application running on YARN; `status`
    // (or the next run) finds it by its tag and kills it.
    let mut run = start_run_until_on_yarn(&job, &conf, "double", 0);
    signal(&format!("-{}", run.id()), "-KILL");
    run.wait().expect("wait");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let apps = yarn_apps(&conf, "double");
    assert!(apps.len() == 1 && apps[0][2] == "RUNNING", "left running by SIGKILL: {apps:?}");
    let (ok, out) = bridge(&["status", "--job", job.to_str().expect("path")]);
    assert!(ok && out.contains("interrupted") && out.contains(&format!("KILLED {}", apps[0][1])), "status kills the leftover: {out}");
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(ok, "{out}");
    ran_on_yarn(&cluster_dir, &conf, "double");
    let apps = yarn_apps(&conf, "double");
    assert!(apps.len() == 2 && apps.iter().any(|a| a[2] == "KILLED"), "the leftover was killed: {apps:?}");
    until("enriched records on another client", || {
        (0..40i64).all(|i| field(&other.get(&todos, &Key::Number(i as f64)).ok().flatten(), "double") == Some(Value::Int(i * 2)))
    })
    .await;

    // watch: one session, one YARN application, for every run; an edit reaches the results.
    let job = write_job_with(tmp.path(), "watched", &url, &base, "",
        &format!("kind = \"aggregate\"\ngroup_by = [\"project\"]\naggregates = [\"count\"]\nresults_store = \"watched\"\n\n{on_yarn}"));
    let watched = StoreRef::new("app", "watched");
    let seen = client(&url, &[&watched]).await;
    // Killed if the test fails before the end.
    let mut watch = test_cluster::Running(Command::new(env!("CARGO_BIN_EXE_tidepool-bridge"))
        .args(["watch", "--debounce-ms", "200", "--job", job.to_str().expect("path")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("bridge"));
    let count = |project: &str| field(&seen.get(&watched, &Key::from(project)).ok().flatten(), "count");
    // A session's application master needs a container first: allow for a busy machine.
    let long = std::time::Duration::from_secs(300);
    until_within("the first totals from the session on YARN", long, || count("alpha") == Some(Value::Int(20))).await;
    user.put(&todos, &Key::Number(40.0), &object! { "project" => "alpha", "hours" => 1i64, "done" => false }).expect("put");
    until_within("totals after an edit", long, || count("alpha") == Some(Value::Int(21))).await;
    let apps = yarn_apps(&conf, "watched");
    assert!(apps.len() == 1 && apps[0][2] == "RUNNING", "one session application for both runs: {apps:?}");
    signal(&watch.0.id().to_string(), "-TERM");
    watch.0.wait().expect("wait");
    let apps = wait_apps(&conf, "watched", "the session to end with the bridge", |apps| apps.iter().all(|a| a[2] != "RUNNING"));
    assert_eq!(apps.len(), 1, "{apps:?}");
}
