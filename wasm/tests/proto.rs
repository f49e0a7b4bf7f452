use wasm_bindgen_test::*;
use tidepool_core::{Key, Record, StoreRef, object, DocId};
use tidepool_core::automerge::{self, ActorId, AutoCommit, ROOT, ObjType, transaction::{Transactable, CommitOptions}};
wasm_bindgen_test_configure!(run_in_browser);

fn now() -> f64 { web_sys::window().unwrap().performance().unwrap().now() }
fn log(s: String) { web_sys::console::log_1(&s.into()); }

#[wasm_bindgen_test]
async fn proto_automerge_cost() {
    let store = StoreRef::new("db", "todos");
    let actor = ActorId::from([1u8; 16]);
    let t0 = now();
    for i in 0..10_000i64 { let _ = DocId::derive(&store, &Key::Number(i as f64)).unwrap(); }
    log(format!("docid 10k {:.0}", now() - t0));
    let t0 = now();
    for _ in 0..10_000i64 { let _ = AutoCommit::new(); }
    log(format!("AutoCommit::new 10k {:.0}", now() - t0));
    let t0 = now();
    for i in 0..10_000i64 { let mut d = AutoCommit::new().with_actor(ActorId::from([i as u8; 16])); d.put_object(ROOT, "v", ObjType::Map).unwrap(); d.put_object(ROOT, "p", ObjType::Map).unwrap(); }
    log(format!("2 put_object no commit 10k {:.0}", now() - t0));
    let t0 = now();
    for i in 0..10_000i64 { let mut d = AutoCommit::new().with_actor(ActorId::from([i as u8; 16])); d.put_object(ROOT, "v", ObjType::Map).unwrap(); d.put_object(ROOT, "p", ObjType::Map).unwrap(); d.commit_with(CommitOptions::default().with_time(0)); }
    log(format!("+commit 10k {:.0}", now() - t0));
    let t0 = now();
    for i in 0..10_000i64 { let _ = Record::new(&store, &Key::Number(i as f64), &actor).unwrap(); }
    log(format!("Record::new 10k {:.0}", now() - t0));
    let mut recs: Vec<Record> = (0..10_000i64).map(|i| Record::new(&store, &Key::Number(i as f64), &actor).unwrap()).collect();
    let t0 = now();
    for (i, r) in recs.iter_mut().enumerate() { r.put(&object! { "title" => format!("todo {i}"), "done" => i % 2 == 0, "n" => i as i64 }, 1).unwrap().unwrap(); }
    log(format!("put 10k {:.0}", now() - t0));
    let t0 = now();
    for (i, r) in recs.iter_mut().enumerate() { r.put(&object! { "title" => format!("todo {i}"), "done" => i % 2 == 1, "n" => i as i64 }, 1).unwrap().unwrap(); }
    log(format!("second put 10k {:.0}", now() - t0));
    let t0 = now();
    for r in recs.iter_mut() { let _ = r.get_plain().unwrap(); }
    log(format!("get_plain 10k {:.0}", now() - t0));
    let _ = automerge::ChangeHash([0;32]);
}
