//! The warm Tez session (`SessionRunner`) in local mode: one JVM and one application master take
//! DAG requests on stdin, one `DAG_STATUS` line each; its results equal the one-shot runner's, and
//! a bad request is answered without ending the session.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{assert_runner_built, runner_dir};
use tidepool_tez_bridge::tez::JAVA17_OPENS;
use tidepool_tez_bridge::test_cluster::Running;

fn classpath() -> String {
    let r = runner_dir();
    format!("{}:{}", r.join("tidepool-tez.jar").display(), r.join("lib/*").display())
}

fn parts(dir: &std::path::Path) -> String {
    let mut names: Vec<_> = std::fs::read_dir(dir).expect("output").flatten().map(|e| e.path()).filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("part-"))).collect();
    names.sort();
    names.iter().map(|p| std::fs::read_to_string(p).expect("part")).collect()
}

#[test]
fn a_session_runs_many_dags() {
    assert_runner_built();
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    let mut lines = String::new();
    for i in 0..2000 {
        lines += &format!("{{\"key\":{i},\"doc\":\"{i:064x}\",\"heads\":[],\"value\":{{\"project\":\"p{}\",\"hours\":{},\"done\":{}}}}}\n", i % 7, i % 13, i % 3 == 0);
    }
    std::fs::write(input.join("part-00000.jsonl"), lines).expect("input");
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).expect("mkdir");
    let java = |main: &str| {
        let mut cmd = Command::new("java");
        cmd.args(JAVA17_OPENS)
            .arg(format!("-Djava.io.tmpdir={}", scratch.display()))
            .arg(format!("-Dorg.xerial.snappy.tempdir={}", scratch.display()))
            .arg("-cp")
            .arg(classpath())
            .arg(main);
        cmd
    };
    let agg = |out: &str| {
        vec!["--dag", "aggregate", "--input", input.to_str().expect("path"), "--output", out, "--group-by", "project", "--agg", "count", "--agg", "sum:hours", "--where", "!done"]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let out = |name: &str| tmp.path().join(name).display().to_string();

    // The one-shot runner's result, for comparison.
    let cold = java("dev.tidepool.tez.DagRunner").args(agg(&out("cold"))).stdin(Stdio::null()).stderr(Stdio::null()).output().expect("runner");
    assert!(cold.status.success(), "{}", String::from_utf8_lossy(&cold.stdout));

    let mut child = java("dev.tidepool.tez.SessionRunner").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("session");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let session = Running(child);
    assert_eq!(stdout.next().expect("a line").expect("read"), "READY");
    let mut ask = |request: Vec<String>| -> String {
        writeln!(stdin, "{}", request.join("\t")).expect("request");
        stdin.flush().expect("flush");
        stdout.next().expect("a status line").expect("read")
    };
    let first = ask(agg(&out("warm1")));
    assert!(first.starts_with("DAG_STATUS SUCCEEDED "), "{first}");
    let bad = ask(vec!["--dag".into(), "aggregate".into(), "--input".into(), input.display().to_string(), "--output".into(), out("bad"), "--where".into(), "hours >".into()]);
    assert!(bad.starts_with("DAG_STATUS NOT_SUBMITTED "), "{bad}");
    let second = ask(agg(&out("warm2")));
    assert!(second.starts_with("DAG_STATUS SUCCEEDED "), "the session survives a bad request: {second}");
    let enrich = ask(["--dag", "enrich", "--input", input.to_str().expect("path"), "--output", &out("enrich"), "--field", "twice=hours * 2", "--where", "project == 'p1'"].map(str::to_owned).to_vec());
    assert!(enrich.starts_with("DAG_STATUS SUCCEEDED "), "{enrich}");
    drop(session);

    let expected = parts(&tmp.path().join("cold"));
    assert!(expected.lines().count() == 7, "{expected}");
    assert_eq!(parts(&tmp.path().join("warm1")), expected);
    assert_eq!(parts(&tmp.path().join("warm2")), expected);
    assert_eq!(parts(&tmp.path().join("enrich")).lines().count(), (0..2000).filter(|i| i % 7 == 1).count());
    assert!(!tmp.path().join("bad").exists());
}

