//! Benchmark (run by `make bench-wasm`, not by `make test`): in one Chromium, bulkPut of 1,000,
//! 3,000 and 10,000 records through Tidepool against raw IndexedDB puts of the same plain values
//! in one transaction, and the cold open of a database of that size; then single puts from two
//! tabs in turn. Prints `BENCH {json}` lines.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use js_sys::{Array, Promise};
use tidepool_wasm::Tidepool;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const RECORDS: u32 = 10_000;
/// Store sizes of the bulkPut and cold-open figures, so growth worse than linear shows.
const SIZES: [u32; 3] = [1_000, 3_000, RECORDS];
const ROUNDS: usize = 3;
const SINGLE_PUTS: u32 = 100;

#[wasm_bindgen(inline_js = r#"
export function make_values(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push({ title: "todo number " + i, done: i % 2, owner: "user" + (i % 50), rank: i, tags: ["a", "b" + (i % 7)] });
  }
  return out;
}
export function as_entries(values) { return values.map((v, i) => [i, v]); }
export async function raw_bulk_put(name, values) {
  const db = await new Promise((resolve, reject) => {
    const r = indexedDB.open(name, 1);
    r.onupgradeneeded = () => r.result.createObjectStore("todos");
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  const start = performance.now();
  const tx = db.transaction("todos", "readwrite");
  const store = tx.objectStore("todos");
  for (let i = 0; i < values.length; i++) store.put(values[i], i);
  await new Promise((resolve, reject) => { tx.oncomplete = resolve; tx.onerror = () => reject(tx.error); tx.onabort = () => reject(tx.error); });
  const ms = performance.now() - start;
  db.close();
  return ms;
}
export function now() { return performance.now(); }
"#)]
extern "C" {
    fn make_values(n: u32) -> Array;
    fn as_entries(values: &Array) -> Array;
    fn raw_bulk_put(name: &str, values: &Array) -> Promise;
    fn now() -> f64;
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn options(name: &str) -> JsValue {
    json(&format!(r#"{{"name": "{name}", "stores": [{{"name": "todos", "indexes": []}}]}}"#))
}

#[wasm_bindgen_test]
async fn bench_bulk_put_and_cold_open() {
    for records in SIZES {
        bench_bulk_put_and_cold_open_of(records).await;
    }
    bench_puts_from_two_tabs_in_turn().await;
}

async fn bench_bulk_put_and_cold_open_of(records: u32) {
    let values = make_values(records);
    let entries = as_entries(&values);
    let (mut raw, mut tidepool, mut cold, mut first_edit, mut single) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let raw_name = unique("bench-raw");
        raw.push(ok(raw_bulk_put(&raw_name, &values)).await.as_f64().unwrap());
        ok(Tidepool::delete_database(raw_name)).await;

        let name = unique("bench-tidepool");
        let db = open(options(&name)).await;
        let start = now();
        ok(db.bulk_put("todos".into(), entries.clone().into())).await;
        tidepool.push(now() - start);
        ok(db.close()).await;

        let start = now();
        let db = open(options(&name)).await;
        cold.push(now() - start);
        assert_eq!(get(&db.status(), "pending").as_f64(), Some(f64::from(records)));
        let start = now();
        ok(db.increment("todos".into(), (records / 2).into(), "rank".into(), 1.0)).await;
        first_edit.push(now() - start);
        // One put at a time, as an app saving a form does: each is its own transaction.
        let start = now();
        for i in 0..SINGLE_PUTS {
            ok(db.put("todos".into(), (f64::from(records) + f64::from(i)).into(), values.get(i))).await;
        }
        single.push((now() - start) / f64::from(SINGLE_PUTS));
        if round == 0 {
            let all: Array = ok(db.get_all("todos".into(), None, None)).await.unchecked_into();
            assert_eq!(all.length(), records + SINGLE_PUTS);
        }
        ok(db.close()).await;
        ok(Tidepool::delete_database(name)).await;
    }
    let (raw, tidepool, cold, first_edit, single) = (median(raw), median(tidepool), median(cold), median(first_edit), median(single));
    let line = format!(
        r#"BENCH {{"records": {records}, "rounds": {ROUNDS}, "raw_idb_ms": {raw:.0}, "tidepool_bulk_put_ms": {tidepool:.0}, "throughput_vs_raw": {:.2}, "cold_open_ms": {cold:.0}, "first_edit_after_open_ms": {first_edit:.0}, "single_put_ms": {single:.1}}}"#,
        raw / tidepool
    );
    web_sys::console::log_1(&line.into());
}

/// Two instances of one database (as two tabs have) writing in turn: each put then first rereads
/// the indexes the other's put changed. Single puts in a compacted 10,000-record database,
/// alternating between the two, against the same puts from one instance. Run after the bulkPut
/// rounds (not as a test of its own, which might run first) so its 10,000-record database does
/// not weigh on them.
async fn bench_puts_from_two_tabs_in_turn() {
    let values = make_values(RECORDS);
    let name = unique("bench-tabs");
    let first = open(options(&name)).await;
    ok(first.bulk_put("todos".into(), as_entries(&values).into())).await;
    ok(first.compact()).await;
    let second = open(options(&name)).await;
    let (mut alone, mut in_turn) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS as u32 {
        let start = now();
        for i in 0..SINGLE_PUTS {
            ok(first.put("todos".into(), (i + round * 1000).into(), values.get(i + 1))).await;
        }
        alone.push((now() - start) / f64::from(SINGLE_PUTS));
        let start = now();
        for i in 0..SINGLE_PUTS {
            let db = if i % 2 == 0 { &first } else { &second };
            ok(db.put("todos".into(), (i + round * 1000).into(), values.get(i + 2))).await;
        }
        in_turn.push((now() - start) / f64::from(SINGLE_PUTS));
    }
    assert_consistent(&second, "todos").await;
    ok(first.close()).await;
    ok(second.close()).await;
    ok(Tidepool::delete_database(name)).await;
    let (alone, in_turn) = (median(alone), median(in_turn));
    let line = format!(
        r#"BENCH {{"case": "single puts, two tabs in turn", "records": {RECORDS}, "puts": {SINGLE_PUTS}, "one_tab_put_ms": {alone:.1}, "two_tabs_in_turn_put_ms": {in_turn:.1}, "in_turn_vs_one_tab": {:.1}}}"#,
        in_turn / alone
    );
    web_sys::console::log_1(&line.into());
}
