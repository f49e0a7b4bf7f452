//! Record semantics: put/get/delete, minimal changes, counters, text, and the concurrent cases
//! of the merge-semantics table in ARCHITECTURE.md.

use automerge::ActorId;
use tidepool_core::wire::Payload;
use tidepool_core::{Key, PathSegment, Record, StoreRef, Value, object};

fn store() -> StoreRef {
    StoreRef::new("app", "todos")
}

fn actor(n: u8) -> ActorId {
    ActorId::from([n; 16])
}

fn record(n: u8) -> Record {
    Record::new(&store(), &Key::from("k"), &actor(n)).unwrap()
}

/// Exchanges all changes both ways.
fn merge(a: &mut Record, b: &mut Record) {
    let from_a = a.changes_since(&[]);
    let from_b = b.changes_since(&[]);
    a.apply(&Payload::Changes(from_b)).unwrap();
    b.apply(&Payload::Changes(from_a)).unwrap();
    assert_eq!(a.heads(), b.heads());
}

fn ops(change: &tidepool_core::LocalChange) -> usize {
    let c = automerge::Change::try_from(change.bytes.as_slice()).unwrap();
    c.len()
}

#[test]
fn put_get_delete() {
    let mut r = record(1);
    assert_eq!(r.get().unwrap(), None);
    let v = object! { "title" => "milk", "done" => false, "n" => 3i64 };
    assert!(r.put(&v, 1).unwrap().is_some());
    assert_eq!(r.get().unwrap(), Some(v.clone()));
    assert!(r.put(&v, 2).unwrap().is_none(), "unchanged put must not make a change");
    assert!(r.delete(3).unwrap().is_some());
    assert_eq!(r.get().unwrap(), None);
    assert!(r.delete(4).unwrap().is_none());
    assert!(r.put(&v, 5).unwrap().is_some());
    assert_eq!(r.get().unwrap(), Some(v));
}

#[test]
fn put_writes_only_changed_fields() {
    let mut r = record(1);
    let mut fields: Vec<(String, Value)> = (0..50).map(|i| (format!("f{i}"), Value::Int(i))).collect();
    r.put(&Value::Object(fields.iter().cloned().collect()), 1).unwrap();
    fields[7].1 = Value::from("changed");
    let change = r.put(&Value::Object(fields.into_iter().collect()), 2).unwrap().unwrap();
    // One field and the liveness marker.
    assert_eq!(ops(&change), 2);
}

#[test]
fn list_insert_is_one_insert() {
    let mut r = record(1);
    let items: Vec<Value> = (0..100).map(Value::Int).collect();
    r.put(&object! { "items" => Value::Array(items.clone()) }, 1).unwrap();
    let mut more = items.clone();
    more.insert(50, Value::from("new"));
    more.push(Value::from("end"));
    let change = r.put(&object! { "items" => Value::Array(more.clone()) }, 2).unwrap().unwrap();
    assert_eq!(ops(&change), 3);
    assert_eq!(r.get().unwrap(), Some(object! { "items" => Value::Array(more) }));
}

#[test]
fn nested_object_edit_is_in_place() {
    let mut r = record(1);
    let v = object! { "a" => object! { "b" => object! { "c" => 1i64, "d" => 2i64 } } };
    r.put(&v, 1).unwrap();
    let w = object! { "a" => object! { "b" => object! { "c" => 1i64, "d" => 3i64 } } };
    let change = r.put(&w, 2).unwrap().unwrap();
    assert_eq!(ops(&change), 2);
}

#[test]
fn concurrent_puts_to_different_fields_both_survive() {
    let mut a = record(1);
    let mut b = record(2);
    a.put(&object! { "title" => "milk" }, 1).unwrap();
    merge(&mut a, &mut b);
    a.put(&object! { "title" => "oat milk" }, 2).unwrap();
    b.put(&object! { "title" => "milk", "done" => true }, 2).unwrap();
    merge(&mut a, &mut b);
    let expect = object! { "title" => "oat milk", "done" => true };
    assert_eq!(a.get().unwrap(), Some(expect.clone()));
    assert_eq!(b.get().unwrap(), Some(expect));
}

#[test]
fn same_key_created_offline_merges_fields() {
    let mut a = record(1);
    let mut b = record(2);
    a.put(&object! { "x" => 1i64 }, 1).unwrap();
    b.put(&object! { "y" => 2i64 }, 1).unwrap();
    merge(&mut a, &mut b);
    // Both wrote every field they had; the genesis map is shared, so nothing is lost.
    let v = a.get().unwrap().unwrap();
    let Value::Object(fields) = v else { panic!("not an object") };
    assert!(fields.contains_key("x") && fields.contains_key("y"), "{fields:?}");
}

#[test]
fn concurrent_put_wins_over_delete_with_full_value() {
    let mut a = record(1);
    let mut b = record(2);
    a.put(&object! { "title" => "milk", "n" => 1i64 }, 1).unwrap();
    merge(&mut a, &mut b);
    a.delete(2).unwrap();
    b.put(&object! { "title" => "milk", "n" => 2i64 }, 2).unwrap();
    merge(&mut a, &mut b);
    let expect = Some(object! { "title" => "milk", "n" => 2i64 });
    assert_eq!(a.get().unwrap(), expect);
    assert_eq!(b.get().unwrap(), expect);
}

#[test]
fn concurrent_deletes_delete() {
    let mut a = record(1);
    let mut b = record(2);
    a.put(&object! { "title" => "milk" }, 1).unwrap();
    merge(&mut a, &mut b);
    a.delete(2).unwrap();
    b.delete(2).unwrap();
    merge(&mut a, &mut b);
    assert_eq!(a.get().unwrap(), None);
    assert_eq!(b.get().unwrap(), None);
}

#[test]
fn counters_add_up_and_survive_plain_puts() {
    let mut a = record(1);
    let mut b = record(2);
    a.put(&object! { "likes" => 0i64 }, 1).unwrap();
    a.increment(&[PathSegment::from("likes")], 1, 2).unwrap();
    merge(&mut a, &mut b);
    a.increment(&[PathSegment::from("likes")], 5, 3).unwrap();
    b.increment(&[PathSegment::from("likes")], 10, 3).unwrap();
    // A plain put of an integer onto a counter becomes an increment.
    b.put(&object! { "likes" => 12i64 }, 4).unwrap();
    merge(&mut a, &mut b);
    assert_eq!(a.get().unwrap(), Some(object! { "likes" => Value::Counter(17) }));
    assert_eq!(a.get_plain().unwrap(), Some(object! { "likes" => 17i64 }));
}

#[test]
fn text_splices_interleave() {
    let mut a = record(1);
    let mut b = record(2);
    a.put(&object! { "body" => "hello world" }, 1).unwrap();
    a.splice_text(&[PathSegment::from("body")], 0, 0, "", 1).unwrap();
    merge(&mut a, &mut b);
    a.splice_text(&[PathSegment::from("body")], 5, 0, ",", 2).unwrap();
    b.splice_text(&[PathSegment::from("body")], 11, 0, "!", 2).unwrap();
    // A plain put of a string onto text is a text diff, not a replacement.
    b.put(&object! { "body" => "hello world!!" }, 3).unwrap();
    merge(&mut a, &mut b);
    assert_eq!(a.get_plain().unwrap(), Some(object! { "body" => "hello, world!!" }));
    assert!(matches!(
        a.splice_text(&[PathSegment::from("body")], 100, 1, "x", 4),
        Err(tidepool_core::RecordError::SpliceOutOfRange { .. })
    ));
}

#[test]
fn corrupt_bytes_leave_document_untouched() {
    let mut r = record(1);
    r.put(&object! { "a" => 1i64 }, 1).unwrap();
    let heads = r.heads();
    let mut other = record(2);
    let good = other.put(&object! { "b" => 2i64 }, 1).unwrap().unwrap().bytes;
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xFF;
    assert!(r.apply(&Payload::Changes(vec![good, bad])).is_err());
    assert_eq!(r.heads(), heads);
    assert!(r.apply(&Payload::Document(vec![1, 2, 3])).is_err());
    assert_eq!(r.heads(), heads);
}

#[test]
fn saved_document_round_trips() {
    let mut r = record(1);
    let v = object! { "when" => Value::Date(1_700_000_000_000), "bin" => Value::Bytes(vec![0, 1, 2]), "f" => 1.5f64, "nil" => Value::Null };
    r.put(&v, 1).unwrap();
    let saved = r.save();
    let loaded = Record::load(&store(), Key::from("k").encode().unwrap(), &Payload::Document(saved), &actor(3)).unwrap();
    assert_eq!(loaded.get().unwrap(), Some(v));
}

#[test]
fn scalar_record_values() {
    let mut r = record(1);
    r.put(&Value::from("just a string"), 1).unwrap();
    assert_eq!(r.get().unwrap(), Some(Value::from("just a string")));
    r.put(&Value::Array(vec![Value::Int(1)]), 2).unwrap();
    assert_eq!(r.get().unwrap(), Some(Value::Array(vec![Value::Int(1)])));
    r.put(&object! { "back" => "to object" }, 3).unwrap();
    assert_eq!(r.get().unwrap(), Some(object! { "back" => "to object" }));
}
