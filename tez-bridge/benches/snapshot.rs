//! Bridge benchmark (`make bench`): a 100,000-record snapshot written to a real MiniDFSCluster
//! beside a raw hdfs-native write of the same bytes in the same run, the Tez local-mode DAG time
//! over it, and write-back change generation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use tidepool_core::automerge::ActorId;
use tidepool_core::{Key, Record, StoreRef, Value, WriteBack, object};
use tidepool_tez_bridge::fs::RunFs;
use tidepool_tez_bridge::job::{DagSpec, JobSpec, TezSpec, Timeouts};
use tidepool_tez_bridge::output::FieldResult;
use tidepool_tez_bridge::plan;
use tidepool_core::wire::ExportRecord;
use tidepool_tez_bridge::snapshot::{self, SnapshotId, SnapshotRecord, SnapshotWriter};

const RECORDS: usize = 100_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("jvm/target");
    let tmp = std::env::temp_dir().join(format!("tidepool-bench-{}", std::process::id()));
    let (cluster, namenode) = tidepool_tez_bridge::test_cluster::hdfs(&runner, &tmp.join("dfs"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(bench(&namenode));
    drop(cluster);
    let _ = std::fs::remove_dir_all(tmp);
}

async fn bench(namenode: &str) {
    let store = StoreRef::new("bench", "items");
    let actor = ActorId::from([1u8; 16]);
    let t = Instant::now();
    let mut records: BTreeMap<_, Record> = BTreeMap::new();
    for i in 0..RECORDS {
        let mut r = Record::new(&store, &Key::Number(i as f64), &actor).expect("key");
        r.put(&object! { "group" => format!("g{}", i % 100), "amount" => (i % 1000) as i64, "title" => format!("record number {i}") }, 0)
            .expect("put");
        records.insert(r.id(), r);
    }
    eprintln!("prepared {RECORDS} records in {:.1}s", t.elapsed().as_secs_f64());
    let snaps: Vec<SnapshotRecord> = records.values_mut().map(|r| SnapshotRecord::of(r).expect("record")).collect();

    let fs = RunFs::open(&format!("{namenode}/bench")).expect("hdfs");
    let id = SnapshotId { job: "bench", run: "r", db: "bench", store: "items", cursor: None };

    let job = JobSpec {
        name: "bench".into(),
        hub: String::new(),
        token: Some(String::new()),
        token_file: None,
        db: "bench".into(),
        store: "items".into(),
        base: String::new(),
        incremental: false,
        dag: DagSpec::Aggregate { group_by: vec!["group".into()], aggregates: vec!["count".into(), "sum:amount".into()], results_store: "out".into() },
        tez: TezSpec::default(),
        timeouts: Timeouts::default(),
    };
    // The bridge's side of a snapshot (export records, as the hub sends them, turned into lines
    // and manifest entries and written) and a raw hdfs-native write of the same bytes,
    // interleaved three times; medians. The hub's export itself is not in this figure.
    let exported: Vec<ExportRecord> = snaps.iter().map(|s| s.export_record().expect("key")).collect();
    let lines = Bytes::from(snapshot::build(&id, &snaps, None).expect("snapshot").lines);
    let bytes = lines.len();
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let t = Instant::now();
        let mut writer = SnapshotWriter::new(None);
        let (mut chunk, mut docs, mut chunks) = (Vec::new(), Vec::new(), Vec::new());
        for r in &exported {
            writer.add(r, &mut chunk, &mut docs).expect("line");
            if chunk.len() >= 1 << 20 {
                chunks.push(Bytes::from(std::mem::take(&mut chunk)));
            }
        }
        chunks.push(Bytes::from(chunk));
        fs.write(&format!("snap{round}/part-00000.jsonl"), chunks).await.expect("write");
        ours.push(t.elapsed().as_secs_f64());
        assert_eq!(writer.records, RECORDS);

        let t = Instant::now();
        fs.write(&format!("raw{round}/part-00000.jsonl"), [lines.clone()]).await.expect("write");
        raw.push(t.elapsed().as_secs_f64());
    }
    ours.sort_by(f64::total_cmp);
    raw.sort_by(f64::total_cmp);
    let (ours, raw) = (ours[1], raw[1]);
    println!(
        "summary snapshot of {RECORDS} records ({:.1} MiB): tidepool {:.0} records/s ({ours:.2}s), raw hdfs-native write {raw:.2}s, ratio {:.2}x of raw (medians of 3)",
        bytes as f64 / 1048576.0,
        RECORDS as f64 / ours,
        raw / ours
    );

    // Tez local mode over the snapshot.
    let t = Instant::now();
    let r = tidepool_tez_bridge::tez::run(&job, &fs.default_fs(), &fs.uri("snap0"), &fs.uri("agg-out")).await.expect("tez");
    println!("summary tez local-mode aggregate DAG over {RECORDS} records: {:.1}s wall ({})", t.elapsed().as_secs_f64(), r.stdout.trim());

    // Write-back change generation for every record.
    let heads: std::collections::HashMap<_, _> = snaps.iter().map(|s| (s.doc, s.heads.clone())).collect();
    let results: Vec<FieldResult> = snaps
        .iter()
        .map(|s| FieldResult { doc: s.doc, key: s.key.clone(), fields: [("score".to_owned(), Value::Int(1))].into() })
        .collect();
    let t = Instant::now();
    let changes = plan::field_changes(&WriteBack::new("bench", "r"), &store, &results, &heads, &mut records).expect("plan");
    let secs = t.elapsed().as_secs_f64();
    println!("summary write-back: {} changes generated in {secs:.2}s, {:.0} changes/s", changes.len(), changes.len() as f64 / secs);
}
