use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use tidepool_core::{Key, Record, StoreRef, Value, object};
use tidepool_core::automerge::ActorId;
wasm_bindgen_test_configure!(run_in_browser);

fn now() -> f64 { web_sys::window().unwrap().performance().unwrap().now() }

#[wasm_bindgen_test]
async fn proto_automerge_cost() {
    let store = StoreRef::new("db", "todos");
    let actor = ActorId::from([1u8; 16]);
    let t0 = now();
    let mut bytes = 0;
    for i in 0..10_000i64 {
        let mut r = Record::new(&store, &Key::Number(i as f64), &actor).unwrap();
        let c = r.put(&object! { "title" => format!("todo {i}"), "done" => i % 2 == 0, "n" => i }, 1).unwrap().unwrap();
        bytes += c.bytes.len();
    }
    let t1 = now();
    let mut r = Record::new(&store, &Key::Number(1.0), &actor).unwrap();
    r.put(&object! { "title" => "x", "done" => true, "n" => 1 }, 1).unwrap();
    let t2 = now();
    let mut sb = 0;
    for _ in 0..10_000 { sb += r.save().len(); }
    let t3 = now();
    let s = r.save();
    let t4 = now();
    for _ in 0..10_000 { let _ = Record::load(&store, Key::Number(1.0).encode().unwrap(), &tidepool_core::wire::Payload::Document(s.clone()), &actor).unwrap(); }
    let t5 = now();
    web_sys::console::log_1(&format!("new+put 10k: {:.0} ms ({} change bytes); save 10k: {:.0} ms ({} bytes) load 10k: {:.0}", t1 - t0, bytes, t3 - t2, sb, t5-t4).into());
}
