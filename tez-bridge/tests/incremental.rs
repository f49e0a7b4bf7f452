//! Incremental runs against real HDFS and Tez: random inserts, edits and deletes between runs,
//! and every result compared with a full run over the same state.
//!
//! An incremental `enrich` snapshot must hold exactly the records users changed since the job's
//! last written-back run (the job's own write-back is not a change), and its results must equal a
//! full run's. An `aggregate` job marked incremental must produce exactly what a full run does,
//! groups that lost all their records included.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{bridge, client, field, hdfs, hub, until, write_job_with, TIMEOUT};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tidepool_client::Client;
use tidepool_core::{Key, StoreRef, Value, object};

const AGGREGATE: &str = "kind = \"aggregate\"\ngroup_by = [\"project\"]\naggregates = [\"count\", \"sum:hours\", \"min:hours\", \"max:hours\"]";

fn value(project: u32, hours: i64, title: &str) -> Value {
    object! { "project" => format!("p{project}"), "hours" => hours, "title" => title }
}

/// Runs a job and returns how many records its snapshot held.
fn run(job: &std::path::Path) -> usize {
    let (ok, out) = bridge(&["run", "--job", job.to_str().expect("path")]);
    assert!(ok, "{out}");
    let records_in = out.split(" records in").next().and_then(|s| s.rsplit(' ').next()).and_then(|n| n.parse().ok());
    records_in.unwrap_or_else(|| panic!("no record count in: {out}"))
}

/// count and sum of hours per project, as the test computes them from the records.
fn expected_groups(live: &BTreeMap<i64, (u32, i64)>) -> BTreeMap<String, (i64, i64)> {
    let mut groups: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (project, hours) in live.values() {
        let g = groups.entry(format!("p{project}")).or_default();
        g.0 += 1;
        g.1 += hours;
    }
    groups
}

fn groups_of(observer: &Client, store: &StoreRef) -> BTreeMap<String, (i64, i64)> {
    observer
        .values(store)
        .into_iter()
        .filter_map(|(key, v)| {
            let Key::String(name) = Key::decode(&key).ok()? else { return None };
            let v = Some(v);
            match (field(&v, "count"), field(&v, "sum_hours")) {
                (Some(Value::Int(c)), Some(Value::Int(s))) => Some((name, (c, s))),
                _ => None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_equal_full_runs() {
    common::assert_runner_built();
    let tmp = tempfile::tempdir().expect("tmp");
    let (_hdfs, namenode) = hdfs(&tmp.path().join("dfs"));
    let (_hub, url) = hub(&tmp.path().join("hub"));
    let base = format!("{namenode}/tidepool");
    let todos = StoreRef::new("app", "todos");
    let stats_inc = StoreRef::new("app", "stats_inc");
    let stats_full = StoreRef::new("app", "stats_full");
    let dir = tmp.path();
    let agg_inc = write_job_with(dir, "agg_inc", &url, &base, "incremental = true", &format!("{AGGREGATE}\nresults_store = \"stats_inc\""));
    let agg_full = write_job_with(dir, "agg_full", &url, &base, "", &format!("{AGGREGATE}\nresults_store = \"stats_full\""));
    let enrich_inc = write_job_with(dir, "enrich_inc", &url, &base, "incremental = true", "kind = \"enrich\"\n[dag.fields]\nscore = \"hours * 2\"");

    let user = client(&url, &[&todos]).await;
    let observer = client(&url, &[&todos, &stats_inc, &stats_full]).await;
    let mut rng = SmallRng::seed_from_u64(0x7d9e_2026);
    // key -> (project, hours) of every live record.
    let mut live: BTreeMap<i64, (u32, i64)> = BTreeMap::new();
    let mut changed: BTreeSet<i64> = BTreeSet::new();
    let mut next_key = 0i64;
    for _ in 0..40 {
        let (project, hours) = (rng.random_range(0..4), rng.random_range(0..100));
        user.put(&todos, &Key::Number(next_key as f64), &value(project, hours, "first")).expect("put");
        live.insert(next_key, (project, hours));
        changed.insert(next_key);
        next_key += 1;
    }

    for round in 0..4 {
        if round > 0 {
            changed.clear();
            let keys: Vec<i64> = live.keys().copied().collect();
            for _ in 0..6 {
                let (project, hours) = (rng.random_range(0..4), rng.random_range(0..100));
                user.put(&todos, &Key::Number(next_key as f64), &value(project, hours, "new")).expect("insert");
                live.insert(next_key, (project, hours));
                changed.insert(next_key);
                next_key += 1;
            }
            for _ in 0..8 {
                let key = keys[rng.random_range(0..keys.len())];
                if !live.contains_key(&key) {
                    continue;
                }
                let (project, hours) = (rng.random_range(0..4), rng.random_range(0..100));
                user.put(&todos, &Key::Number(key as f64), &value(project, hours, &format!("edit {round}"))).expect("edit");
                live.insert(key, (project, hours));
                changed.insert(key);
            }
            for _ in 0..4 {
                let key = keys[rng.random_range(0..keys.len())];
                if live.remove(&key).is_some() {
                    user.delete(&todos, &Key::Number(key as f64)).expect("delete");
                    changed.remove(&key);
                }
            }
            if round == 2 {
                // A whole group goes away: its result record must go too.
                let doomed: Vec<i64> = live.iter().filter(|(_, (p, _))| *p == 3).map(|(k, _)| *k).collect();
                for key in doomed {
                    live.remove(&key);
                    changed.remove(&key);
                    user.delete(&todos, &Key::Number(key as f64)).expect("delete");
                }
            }
        }
        user.wait_idle(TIMEOUT).await.expect("idle");

        let records_in = run(&enrich_inc);
        let expected_in = changed.iter().filter(|k| live.contains_key(k)).count();
        assert_eq!(records_in, expected_in, "round {round}: the incremental snapshot holds exactly the changed records");
        run(&agg_inc);
        run(&agg_full);

        let expected = expected_groups(&live);
        until(&format!("round {round}: aggregates equal a full run and the records"), || {
            groups_of(&observer, &stats_inc) == expected && groups_of(&observer, &stats_full) == expected
        })
        .await;
        assert_eq!(observer.values(&stats_inc), observer.values(&stats_full), "round {round}: every aggregate field");
        until(&format!("round {round}: every live record enriched from its current value"), || {
            observer.values(&todos).len() == live.len()
                && live.iter().all(|(k, (_, hours))| {
                    field(&observer.get(&todos, &Key::Number(*k as f64)).ok().flatten(), "score") == Some(Value::Int(hours * 2))
                })
        })
        .await;
    }

    // A full enrich run over the final state agrees with what the incremental runs left.
    let enrich_full = write_job_with(dir, "enrich_full", &url, &base, "", "kind = \"enrich\"\n[dag.fields]\ncheck = \"hours * 2\"");
    assert_eq!(run(&enrich_full), live.len());
    until("the full run's results", || {
        live.keys().all(|k| {
            let v = observer.get(&todos, &Key::Number(*k as f64)).ok().flatten();
            field(&v, "check").is_some() && field(&v, "check") == field(&v, "score")
        })
    })
    .await;
}
