//! The whole loop, every part real: the demo app in headless Chromium (the wasm client over
//! IndexedDB), a hub process with SQLite and JWT auth serving the app, a MiniDFSCluster, and the
//! bridge running Tez DAGs in local mode against it.
//!
//! A user adds tasks through the page; an aggregate DAG's project totals reach the page as
//! analytics changes; the user goes offline and edits while an enrich DAG writes back a field
//! on every task; back online, both the user's edits and the DAG's results hold, in this page
//! and in a second user's page that starts from the hub.
//!
//! Run by `make test-e2e` (part of `make test`), which builds the demo site, the binaries and the
//! DAG runner first and points `TIDEPOOL_DEMO_SITE` at the site.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tidepool_tez_bridge::test_cluster::{self, Running, start_announced};

const WAIT: Duration = Duration::from_secs(60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

/// Binaries of this workspace, built by the make target beside the test executable's directory.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    let path = exe.parent().and_then(Path::parent).expect("target dir").join(name);
    assert!(path.exists(), "{} is missing: run `make test-e2e`, which builds it", path.display());
    path
}

fn runner_dir() -> PathBuf {
    let dir = workspace().join("tez-bridge/jvm/target");
    assert!(dir.join("tidepool-tez.jar").exists(), "the DAG runner is missing: run `make tez-jvm`");
    dir
}

fn token(data: &Path, sub: &str, grants: &[&str]) -> String {
    let out = Command::new(binary("tidepool-hub"))
        .args(["token", "--secret-file"])
        .arg(data.join("secret"))
        .args(["--sub", sub, "--db", "app", "--ttl", "1h"])
        .args(grants)
        .output()
        .expect("token");
    assert!(out.status.success(), "token: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn chromedriver() -> (Running, String) {
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let port = free_port();
    let child = Command::new(driver).arg(format!("--port={port}")).stdout(Stdio::null()).spawn().expect("chromedriver");
    let proc = Running(child);
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (proc, format!("http://127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("chromedriver did not listen on port {port}");
}

async fn browser(driver: &str) -> Client {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        }
    });
    let serde_json::Value::Object(caps) = caps else { unreachable!() };
    ClientBuilder::new(HttpConnector::new()).capabilities(caps).connect(driver).await.expect("WebDriver session")
}

fn write_job(dir: &Path, name: &str, hub: &str, token: &str, base: &str, dag: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let mut f = std::fs::File::create(&path).expect("job file");
    write!(
        f,
        "name = \"{name}\"\nhub = \"{hub}\"\ntoken = \"{token}\"\ndb = \"app\"\nstore = \"tasks\"\nbase = \"{base}\"\n\n[dag]\n{dag}\n\n[tez]\nrunner_dir = \"{}\"\n",
        runner_dir().display()
    )
    .expect("write job");
    path
}

fn bridge_run(job: &Path) {
    let out = Command::new(binary("tidepool-bridge")).arg("run").arg("--job").arg(job).output().expect("bridge");
    assert!(
        out.status.success(),
        "bridge run {} failed:\n{}{}",
        job.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the page shows about itself, for failure messages.
async fn page_state(c: &Client) -> String {
    let script = "return ['#status', '#problem', '#tasks', '#stats tbody', '#log'].map(s => { const n = document.querySelector(s); return s + ': ' + (n ? n.outerHTML : 'none'); }).join('\\n');";
    c.execute(script, vec![]).await.map(|v| v.as_str().unwrap_or_default().to_owned()).unwrap_or_else(|e| format!("(page unreadable: {e})"))
}

/// Waits for an element matching `css`; on timeout fails with what the page shows.
async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    match c.wait().at_most(WAIT).every(Duration::from_millis(100)).for_element(Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => panic!("no element matches {css} ({e}); the page shows:\n{}", page_state(c).await),
    }
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.expect("find_all").len()
}

async fn add_task(c: &Client, title: &str, project: &str, hours: u32) {
    c.find(Locator::Css("#title")).await.unwrap().send_keys(title).await.unwrap();
    // The form keeps the last project (the next task is often for the same one).
    let p = c.find(Locator::Css("#project")).await.unwrap();
    p.clear().await.unwrap();
    p.send_keys(project).await.unwrap();
    let h = c.find(Locator::Css("#hours")).await.unwrap();
    h.clear().await.unwrap();
    h.send_keys(&hours.to_string()).await.unwrap();
    c.find(Locator::Css("#add")).await.unwrap().click().await.unwrap();
    wait_for(c, &task(title)).await;
}

fn task(title: &str) -> String {
    format!("#tasks li[data-title=\"{title}\"]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_hub_tez_and_back() {
    let site = std::env::var("TIDEPOOL_DEMO_SITE").map(PathBuf::from).unwrap_or_else(|_| workspace().join("target/demo-site"));
    assert!(site.join("pkg/tidepool_wasm.js").exists(), "no demo site at {}: run `make test-e2e`", site.display());
    let tmp = tempfile::tempdir().expect("tmp");
    let (_hdfs, namenode) = test_cluster::hdfs(&runner_dir(), &tmp.path().join("dfs"));
    let data = tmp.path().join("hub");
    let mut cmd = Command::new(binary("tidepool-hub"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(&data).arg("--static-dir").arg(&site);
    let (_hub, addr) = start_announced(cmd, "listening on ");
    let hub = format!("ws://{addr}/v1/sync");
    let app_token = token(&data, "alice", &["--read", "tasks", "--read", "project_stats", "--write", "tasks"]);
    let bridge_token = token(&data, "analytics", &["--read", "tasks", "--read", "project_stats", "--write", "tasks", "--write", "project_stats"]);
    let base = format!("{namenode}/tidepool");
    let stats_job = write_job(tmp.path(), "project-stats", &hub, &bridge_token, &base,
        "kind = \"aggregate\"\ngroup_by = [\"project\"]\naggregates = [\"count\", \"sum:hours\", \"avg:hours\"]\nresults_store = \"project_stats\"");
    let sizes_job = write_job(tmp.path(), "task-sizes", &hub, &bridge_token, &base,
        "kind = \"enrich\"\n[dag.fields]\nsize = \"if(hours >= 8, 'large', if(hours >= 3, 'medium', 'small'))\"");

    let (_driver, driver_url) = chromedriver();
    let c = browser(&driver_url).await;

    // Alice adds tasks through the form; they reach the hub.
    c.goto(&format!("http://{addr}/?user=alice#token={app_token}")).await.expect("open the app");
    wait_for(&c, "body[data-ready=\"true\"]").await;
    wait_for(&c, "#status[data-connection=\"online\"]").await;
    for (title, project, hours) in [("Write report", "alpha", 2), ("Review budget", "alpha", 5), ("Plan offsite", "beta", 9), ("Fix login", "beta", 1)] {
        add_task(&c, title, project, hours).await;
    }
    wait_for(&c, "#status[data-pending=\"0\"][data-synced=\"true\"]").await;

    // Tez aggregates the snapshot; the totals reach the page as analytics changes.
    bridge_run(&stats_job);
    wait_for(&c, "#stats tr[data-project=\"alpha\"][data-count=\"2\"][data-sum=\"7\"]").await;
    wait_for(&c, "#stats tr[data-project=\"beta\"][data-count=\"2\"][data-sum=\"10\"]").await;
    wait_for(&c, "#log li[data-origin=\"analytics\"][data-store=\"project_stats\"]").await;

    // Alice goes offline and edits while Tez works on a snapshot that has not seen her edits.
    c.find(Locator::Css("#toggle-online")).await.unwrap().click().await.unwrap();
    wait_for(&c, "#status[data-connection=\"offline\"]").await;
    wait_for(&c, &format!("{} input.done", task("Plan offsite"))).await.click().await.unwrap();
    wait_for(&c, &format!("{}[data-done=\"true\"]", task("Plan offsite"))).await;
    wait_for(&c, &format!("{} button.more", task("Fix login"))).await.click().await.unwrap();
    wait_for(&c, &format!("{}[data-hours=\"2\"]", task("Fix login"))).await;
    wait_for(&c, "#status:not([data-pending=\"0\"])").await;
    bridge_run(&sizes_job);

    // Back online: her edits and the DAG's results merge, field by field.
    c.find(Locator::Css("#toggle-online")).await.unwrap().click().await.unwrap();
    wait_for(&c, "#status[data-connection=\"online\"][data-pending=\"0\"][data-synced=\"true\"]").await;
    for (title, size) in [("Write report", "small"), ("Review budget", "medium"), ("Plan offsite", "large"), ("Fix login", "small")] {
        wait_for(&c, &format!("{}[data-size=\"{size}\"]", task(title))).await;
    }
    wait_for(&c, &format!("{}[data-done=\"true\"][data-size=\"large\"]", task("Plan offsite"))).await;
    let hours = c.find(Locator::Css(&format!("{} .hours", task("Fix login")))).await.unwrap().text().await.unwrap();
    assert_eq!(hours, "2h", "the offline increment survives the write-back");
    wait_for(&c, "#log li[data-origin=\"analytics\"][data-store=\"tasks\"]").await;

    // A second user, starting from nothing but the hub, sees the same state.
    let bob = c.new_window(true).await.expect("new tab");
    c.switch_to_window(bob.handle).await.expect("switch");
    c.goto(&format!("http://{addr}/?user=bob")).await.expect("open as bob");
    wait_for(&c, "body[data-ready=\"true\"]").await;
    wait_for(&c, "#status[data-connection=\"online\"][data-synced=\"true\"]").await;
    wait_for(&c, &format!("{}[data-done=\"true\"][data-size=\"large\"]", task("Plan offsite"))).await;
    wait_for(&c, &format!("{}[data-size=\"small\"]", task("Fix login"))).await;
    assert_eq!(c.find(Locator::Css(&format!("{} .hours", task("Fix login")))).await.unwrap().text().await.unwrap(), "2h");
    assert_eq!(count(&c, "#tasks li").await, 4, "{}", page_state(&c).await);
    wait_for(&c, "#stats tr[data-project=\"alpha\"][data-count=\"2\"][data-sum=\"7\"]").await;
    assert_eq!(count(&c, "#problem:not([hidden])").await, 0, "{}", page_state(&c).await);
    c.close().await.expect("close the browser");
}
