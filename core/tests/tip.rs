//! A document's tip against the document itself: every change a tip takes leaves exactly the
//! tip, heads and plain value that applying it to the document gives.

use std::collections::BTreeMap;

use automerge::{ActorId, Change};
use proptest::prelude::*;
use tidepool_core::wire::Payload;
use tidepool_core::writeback::Held;
use tidepool_core::{Key, Patch, Record, StoreRef, Tip, Value, WriteBack, WriteMode, object};

fn record(actor: u8) -> Record {
    Record::new(&StoreRef::new("db", "items"), &Key::from("k"), &ActorId::from([actor; 16])).expect("valid key")
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(Value::Int),
        prop_oneof![Just(0.0), Just(-0.0), Just(1.5), Just(f64::NAN)].prop_map(Value::Float),
        "[xy]{0,2}".prop_map(Value::String),
        (0i64..3).prop_map(Value::Date),
        proptest::collection::vec(any::<u8>(), 0..2).prop_map(Value::Bytes),
    ]
}

/// Mostly scalars, sometimes what the tip cannot take (counters, text, nested objects).
fn arb_field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => arb_scalar(),
        1 => (0i64..3).prop_map(Value::Counter),
        1 => "[ab]{0,2}".prop_map(Value::Text),
        1 => proptest::collection::btree_map("[pq]", arb_scalar(), 0..2).prop_map(Value::Object),
    ]
}

fn arb_fields() -> impl Strategy<Value = BTreeMap<String, Value>> {
    proptest::collection::btree_map("[a-d]", arb_field_value(), 0..4)
}

#[derive(Debug, Clone)]
enum Edit {
    Put(BTreeMap<String, Value>),
    Set(String, Value),
    Remove(String),
    Delete,
    /// This run's results written back on the hub's current heads.
    WriteBack { run: u8, fields: BTreeMap<String, Value>, whole: bool },
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => arb_fields().prop_map(Edit::Put),
        3 => ("[a-d]", arb_field_value()).prop_map(|(k, v)| Edit::Set(k, v)),
        1 => "[a-d]".prop_map(Edit::Remove),
        1 => Just(Edit::Delete),
        3 => (0u8..3, arb_fields(), any::<bool>()).prop_map(|(run, fields, whole)| Edit::WriteBack { run, fields, whole }),
    ]
}

/// A step: peer `peer` (which first catches up with the hub when `sync`) makes `edit`, and the
/// hub takes the change.
fn arb_step() -> impl Strategy<Value = (usize, bool, Edit)> {
    (0usize..3, prop::bool::weighted(0.7), arb_edit())
}

fn plain_text(v: &Option<Value>) -> String {
    format!("{v:?}")
}

/// The plain value after a forward's edits.
fn patched(before: Option<Value>, edits: &[(String, Option<Value>)]) -> Option<Value> {
    let Some(Value::Object(mut fields)) = before else { return before };
    for (key, value) in edits {
        match value {
            Some(v) => fields.insert(key.clone(), v.clone()),
            None => fields.remove(key),
        };
    }
    Some(Value::Object(fields))
}

fn only_plain_scalars(fields: &BTreeMap<String, Value>) -> bool {
    fields.values().all(|v| !matches!(v, Value::Counter(_) | Value::Text(_) | Value::Object(_) | Value::Array(_)))
}

/// Whether the record holds only plain scalars (or nothing) at `keys`: a put there is a put, not
/// an increment, a text edit or an edit inside an object.
fn plain_at(hub: &Record, keys: &[&String]) -> bool {
    let Ok(Some(Value::Object(fields))) = hub.get() else { return false };
    let held: BTreeMap<String, Value> = keys.iter().filter_map(|k| Some(((*k).clone(), fields.get(*k)?.clone()))).collect();
    only_plain_scalars(&held)
}

/// The hub takes one change; whenever the tip takes it too, the two must agree. Returns whether
/// the tip took it.
fn take(hub: &mut Record, bytes: Vec<u8>) -> Result<bool, TestCaseError> {
    let tip = Tip::of(hub);
    let before = hub.get_plain().expect("reads");
    let change = Change::from_bytes(bytes.clone()).expect("a change");
    let forward = tip.as_ref().and_then(|t| t.forward(&change));
    hub.apply(&Payload::Changes(vec![bytes])).expect("applies");
    let Some(f) = forward else { return Ok(false) };
    prop_assert_eq!(hub.heads(), vec![f.head]);
    let now = Tip::of(hub);
    prop_assert_eq!(now.as_ref(), Some(&f.tip));
    prop_assert_eq!(plain_text(&patched(before, &f.edits)), plain_text(&hub.get_plain().expect("reads")));
    let decoded = Tip::decode(&f.tip.encode());
    prop_assert_eq!(decoded.as_ref(), Ok(&f.tip));
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_tip_takes_a_change_exactly_as_the_document_does(steps in proptest::collection::vec(arb_step(), 1..12)) {
        let mut hub = record(9);
        let mut peers = [record(1), record(2), record(3)];
        let mut time = 0;
        for (who, sync, edit) in steps {
            time += 1;
            let peer = &mut peers[who];
            if sync {
                peer.apply(&Payload::Changes(hub.changes_since(&[]))).expect("applies");
            }
            let mut before = peer.heads();
            before.sort();
            let mut hub_heads = hub.heads();
            hub_heads.sort();
            let on_hub_heads = before == hub_heads;
            let change = match &edit {
                Edit::Put(fields) => peer.put(&Value::Object(fields.clone()), time).expect("put"),
                Edit::Set(k, v) => peer.update(&Patch::new().set(k.clone(), v.clone()), time).ok().flatten(),
                Edit::Remove(k) => peer.update(&Patch::new().remove(k.clone()), time).ok().flatten(),
                Edit::Delete => peer.delete(time).expect("delete"),
                Edit::WriteBack { run, fields, whole } => {
                    let wb = WriteBack::new("job", format!("run-{run}"));
                    let heads = hub.heads();
                    let mode = if *whole { WriteMode::WholeRecord } else { WriteMode::Fields };
                    let fast_expected = !whole && Tip::of(&mut hub).is_some() && only_plain_scalars(fields)
                        && plain_at(&hub, &fields.keys().collect::<Vec<_>>());
                    match wb.change(&mut hub.clone(), &heads, fields, mode) {
                        Ok(Some(c)) => {
                            let took = take(&mut hub, c.bytes)?;
                            prop_assert!(took || !fast_expected, "a field write-back of scalars on a live record's heads must be taken");
                        }
                        Ok(None) | Err(_) => {}
                    }
                    continue;
                }
            };
            if let Some(c) = change {
                let simple = matches!(&edit, Edit::Set(k, v)
                    if only_plain_scalars(&[(String::new(), v.clone())].into()) && plain_at(&hub, &[k]));
                let fast_expected = on_hub_heads && simple && Tip::of(&mut hub).is_some();
                let took = take(&mut hub, c.bytes)?;
                prop_assert!(on_hub_heads || !took, "a change on other heads needs the document");
                prop_assert!(took || !fast_expected, "a user's scalar edit on the hub's heads must be taken");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A field write-back built on the tip is the very change the document gives, whenever the
    /// tip can build it, and it can for plain scalars on plain scalars.
    #[test]
    fn a_write_back_on_the_tip_is_the_change_the_document_gives(
        steps in proptest::collection::vec(arb_step(), 0..8),
        fields in arb_fields(),
        run in 0u8..3,
    ) {
        let mut hub = record(9);
        let mut peers = [record(1), record(2), record(3)];
        for (time, (who, _, edit)) in steps.into_iter().enumerate() {
            let peer = &mut peers[who];
            peer.apply(&Payload::Changes(hub.changes_since(&[]))).expect("applies");
            let change = match &edit {
                Edit::Put(fields) => peer.put(&Value::Object(fields.clone()), time as i64).expect("put"),
                Edit::Set(k, v) => peer.update(&Patch::new().set(k.clone(), v.clone()), time as i64).ok().flatten(),
                Edit::Remove(k) => peer.update(&Patch::new().remove(k.clone()), time as i64).ok().flatten(),
                Edit::Delete => peer.delete(time as i64).expect("delete"),
                Edit::WriteBack { run, fields, whole } => {
                    let heads = hub.heads();
                    let mode = if *whole { WriteMode::WholeRecord } else { WriteMode::Fields };
                    WriteBack::new("job", format!("run-{run}")).change(&mut hub.clone(), &heads, fields, mode).ok().flatten()
                }
            };
            if let Some(c) = change {
                hub.apply(&Payload::Changes(vec![c.bytes])).expect("applies");
            }
        }
        let Some(tip) = Tip::of(&mut hub) else { return Ok(()) };
        let wb = WriteBack::new("job", format!("again-{run}"));
        let doc = hub.id();
        let heads = hub.heads();
        // What the tip and the exported plain value say each field holds is what the document
        // says.
        let Ok(Some(Value::Object(plain))) = hub.get_plain() else { return Ok(()) };
        for f in fields.keys().chain(plain.keys()) {
            prop_assert_eq!(format!("{:?}", Held::on_tip(&tip, &plain, f)), format!("{:?}", Held::at(&hub, f)), "field {}", f);
        }
        let on_tip = wb.change_on_tip(&doc, &tip, &fields, |f| Held::on_tip(&tip, &plain, f));
        let expected = wb.change(&mut hub.clone(), &heads, &fields, WriteMode::Fields).expect("builds");
        let plain = only_plain_scalars(&fields) && plain_at(&hub, &fields.keys().collect::<Vec<_>>());
        match on_tip {
            Some(built) => prop_assert_eq!(built.expect("builds"), expected),
            None => prop_assert!(!plain, "plain scalars on plain scalars are built on the tip"),
        }
    }
}

#[test]
fn the_common_shapes_are_taken_and_the_rest_are_not() {
    let mut hub = record(9);
    let mut user = record(1);
    let first = user.put(&object! { "title" => "x", "n" => 1i64 }, 1).unwrap().unwrap();
    hub.apply(&Payload::Changes(user.changes_since(&[]))).unwrap();
    assert_eq!(hub.heads(), vec![first.hash]);

    // A user's edit of one field on the hub's heads.
    let edit = user.update(&Patch::new().set("n", Value::Int(2)), 2).unwrap().unwrap();
    assert!(take(&mut hub, edit.bytes).unwrap());
    // A write-back on the hub's heads, on a new field and an old one.
    let wb = WriteBack::new("job", "r1");
    let heads = hub.heads();
    let fields = [("score".to_owned(), Value::Float(0.5)), ("n".to_owned(), Value::Int(7))].into();
    let c = wb.change(&mut hub.clone(), &heads, &fields, WriteMode::Fields).unwrap().unwrap();
    assert!(take(&mut hub, c.bytes).unwrap());
    assert_eq!(hub.get_plain().unwrap(), Some(object! { "title" => "x", "n" => 7i64, "score" => 0.5 }));

    // A crafted change on the heads whose put leaves the old value beside it (no predecessor).
    let mut fresh = record(9);
    fresh.apply(&Payload::Changes(hub.changes_since(&[]))).unwrap();
    let mut other = record(4);
    other.apply(&Payload::Changes(hub.changes_since(&[]))).unwrap();
    other.put(&object! { "n" => 9i64 }, 5).unwrap();
    let c = Change::from_bytes(other.changes_since(&hub.heads()).pop().unwrap()).unwrap();
    let mut crafted = c.decode();
    for op in &mut crafted.operations {
        op.pred = Vec::new().into();
    }
    crafted.hash = None;
    let crafted = Change::from(crafted);
    assert!(Tip::of(&mut fresh).unwrap().forward(&c).is_some(), "the honest change is taken");
    assert!(Tip::of(&mut fresh).unwrap().forward(&crafted).is_none(), "one that leaves a conflict is not");
    
    // A change on heads the hub has moved past needs the document.
    let stale = user.update(&Patch::new().set("title", Value::String("y".into())), 3).unwrap().unwrap();
    assert!(!take(&mut hub, stale.bytes).unwrap());
    // So does a delete of the record.
    user.apply(&Payload::Changes(hub.changes_since(&[]))).unwrap();
    let gone = user.delete(4).unwrap().unwrap();
    assert!(!take(&mut hub, gone.bytes).unwrap());
    assert_eq!(Tip::of(&mut hub), None, "a deleted record has no tip");


    assert!(Tip::decode(&[]).is_err());
    assert!(Tip::decode(&[1, 0, 200, 1]).is_err(), "a count past the end");
}
