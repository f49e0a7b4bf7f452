//! Field updates (`Record::update`): only the named fields change, on top of the current
//! document, so a remote edit of another field survives whatever the order and timing.

use std::collections::BTreeMap;

use automerge::ActorId;
use proptest::prelude::*;
use tidepool_core::wire::Payload;
use tidepool_core::{Key, Patch, Record, StoreRef, Value};

fn record(actor: u8) -> Record {
    Record::new(&StoreRef::new("db", "items"), &Key::from("k"), &ActorId::from([actor; 16])).expect("valid key")
}

fn obj(fields: &[(&str, Value)]) -> Value {
    Value::Object(fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
}

/// Gives `to` every change `from` has.
fn send(from: &mut Record, to: &mut Record) {
    to.apply(&Payload::Changes(from.changes_since(&[]))).expect("valid changes");
}

fn field<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, f| match v {
        Value::Object(fields) => fields.get(*f),
        _ => None,
    })
}

#[test]
fn update_changes_only_the_named_fields() {
    let mut r = record(1);
    r.put(&obj(&[("title", "milk".into()), ("done", false.into()), ("n", obj(&[("x", 1.into()), ("y", 2.into())]))]), 1).unwrap();
    let patch = Patch::new().set("done", true.into()).remove("title").patch("n", Patch::new().set("y", 3.into()).remove("x"));
    assert!(r.update(&patch, 2).unwrap().is_some());
    assert_eq!(r.get_plain().unwrap(), Some(obj(&[("done", true.into()), ("n", obj(&[("y", 3.into())]))])));
    // The same update again changes nothing, so nothing needs syncing.
    assert!(r.update(&patch, 3).unwrap().is_none());
}

#[test]
fn update_of_a_missing_or_deleted_record_creates_it_from_the_patch() {
    let mut r = record(1);
    let patch = Patch::new().set("a", 1.into()).remove("gone").patch("n", Patch::new().set("x", 2.into()));
    r.update(&patch, 1).unwrap();
    assert_eq!(r.get_plain().unwrap(), Some(obj(&[("a", 1.into()), ("n", obj(&[("x", 2.into())]))])));
    r.put(&obj(&[("a", 1.into()), ("old", 9.into())]), 2).unwrap();
    r.delete(3).unwrap();
    // The deleted record's old fields stay in the document, but an update does not revive them.
    r.update(&Patch::new().set("b", 2.into()), 4).unwrap();
    assert_eq!(r.get_plain().unwrap(), Some(obj(&[("b", 2.into())])));
}

#[test]
fn a_patch_onto_a_field_without_an_object_makes_one() {
    let mut r = record(1);
    r.put(&obj(&[("n", 5.into())]), 1).unwrap();
    r.update(&Patch::new().patch("n", Patch::new().set("x", 1.into()).remove("y")), 2).unwrap();
    assert_eq!(r.get_plain().unwrap(), Some(obj(&[("n", obj(&[("x", 1.into())]))])));
    // A record whose value is not an object becomes the patch's object.
    let mut s = record(2);
    s.put(&Value::Int(3), 1).unwrap();
    s.update(&Patch::new().set("a", 1.into()), 2).unwrap();
    assert_eq!(s.get_plain().unwrap(), Some(obj(&[("a", 1.into())])));
}

#[test]
fn setting_a_counter_or_text_field_merges_like_a_put() {
    let mut a = record(1);
    a.put(&obj(&[("likes", Value::Counter(0)), ("t", Value::Text("ab".into()))]), 1).unwrap();
    let mut b = record(2);
    send(&mut a, &mut b);
    a.increment(&["likes".into()], 2, 2).unwrap();
    b.update(&Patch::new().set("likes", 5.into()).set("t", "abc".into()), 2).unwrap();
    send(&mut a, &mut b);
    send(&mut b, &mut a);
    // Both count (0 + 2 + 5) and the text is edited, not replaced.
    assert_eq!(field(&a.get().unwrap().unwrap(), &["likes"]), Some(&Value::Counter(7)));
    assert_eq!(field(&a.get().unwrap().unwrap(), &["t"]), Some(&Value::Text("abc".into())));
}

#[test]
fn a_too_deep_patch_is_refused_and_changes_nothing() {
    let mut r = record(1);
    r.put(&obj(&[("a", 1.into())]), 1).unwrap();
    let mut deep = Value::Null;
    for _ in 0..80 {
        deep = Value::Array(vec![deep]);
    }
    let err = r.update(&Patch::new().set("b", 2.into()).set("deep", deep), 2).unwrap_err();
    assert!(err.to_string().contains("deeper"), "{err}");
    assert_eq!(r.get_plain().unwrap(), Some(obj(&[("a", 1.into())])));
}

#[test]
fn from_fields_patches_nested_objects_instead_of_replacing_them() {
    let mut r = record(1);
    r.put(&obj(&[("n", obj(&[("x", 1.into()), ("y", 2.into())]))]), 1).unwrap();
    let mut fields = BTreeMap::new();
    fields.insert("n".to_owned(), obj(&[("y", 3.into())]));
    r.update(&Patch::from_fields(fields), 2).unwrap();
    assert_eq!(r.get_plain().unwrap(), Some(obj(&[("n", obj(&[("x", 1.into()), ("y", 3.into())]))])));
}

/// Why `update` exists: a read-modify-put from a stale read reverts the remote edit that arrived
/// in between, an update of the same fields does not.
#[test]
fn a_stale_read_modify_put_loses_a_remote_edit_an_update_keeps_it() {
    let base = obj(&[("a", 1.into()), ("b", 1.into())]);
    let (mut local, mut remote) = (record(1), record(2));
    local.put(&base, 1).unwrap();
    send(&mut local, &mut remote);
    let stale = local.get_plain().unwrap().unwrap();
    remote.update(&Patch::new().set("a", 2.into()), 2).unwrap();
    send(&mut remote, &mut local);

    let mut by_put = local.clone();
    let Value::Object(mut copy) = stale else { unreachable!() };
    copy.insert("b".into(), 2.into());
    by_put.put(&Value::Object(copy), 3).unwrap();
    assert_eq!(field(&by_put.get_plain().unwrap().unwrap(), &["a"]), Some(&Value::Int(1)), "the put reverted a");

    local.update(&Patch::new().set("b", 2.into()), 3).unwrap();
    assert_eq!(local.get_plain().unwrap(), Some(obj(&[("a", 2.into()), ("b", 2.into())])));
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        ".{0,6}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(Value::Bytes),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(3, 20, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-c]", inner, 0..4).prop_map(Value::Object),
        ]
    })
}

/// A local change of one field: set, removed, or (for the nested object `n`) patched.
#[derive(Debug, Clone)]
enum Local {
    Set(Value),
    Remove,
}

/// The remote peer's edit of one field (`a`, or `n.x` inside the nested object).
#[derive(Debug, Clone)]
struct Remote {
    nested: bool,
    value: Value,
    /// By a put of its whole current value with the field changed (done atomically, as a put
    /// from a fresh read is), or by an update.
    by_put: bool,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    LocalToRemote,
    RemoteToLocal,
}

fn arb_local_fields(names: &'static [&'static str]) -> impl Strategy<Value = BTreeMap<String, Local>> {
    let one = prop_oneof![3 => arb_value().prop_map(Local::Set), 1 => Just(Local::Remove)];
    proptest::collection::btree_map(proptest::sample::select(names).prop_map(str::to_owned), one, 0..names.len() + 1)
}

fn patch_of(fields: &BTreeMap<String, Local>) -> Patch {
    fields.iter().fold(Patch::new(), |p, (k, c)| match c {
        Local::Set(v) => p.set(k.clone(), v.clone()),
        Local::Remove => p.remove(k.clone()),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A remote edit of one field and a local update of other fields (top-level and inside a
    /// nested object the remote also edits), in any order and with any syncs in between: after
    /// both replicas have everything, they agree and hold both edits.
    #[test]
    fn a_remote_edit_and_a_local_update_of_other_fields_both_survive(
        base in proptest::collection::btree_map("[a-e]", arb_value(), 0..5),
        base_n in proptest::collection::btree_map("[x-z]", arb_value(), 0..3),
        remote in (any::<bool>(), arb_value(), any::<bool>()).prop_map(|(nested, value, by_put)| Remote { nested, value, by_put }),
        top in arb_local_fields(&["b", "c", "d", "e"]),
        inner in arb_local_fields(&["y", "z"]),
        // Where the two edits fall among the syncs: each sync step runs before, between or
        // after the edits, depending on its slot.
        steps in proptest::collection::vec((0..3usize, prop_oneof![Just(Step::LocalToRemote), Just(Step::RemoteToLocal)]), 0..4),
        remote_first in any::<bool>(),
    ) {
        let mut start = base.clone();
        start.insert("n".into(), Value::Object(base_n));
        let (mut local, mut remote_rec) = (record(1), record(2));
        local.put(&Value::Object(start), 1).unwrap();
        send(&mut local, &mut remote_rec);

        let patch = patch_of(&top).patch("n", patch_of(&inner));
        let mut edits: Vec<bool> = vec![remote_first, !remote_first]; // true = the remote edit
        let mut time = 10;
        for slot in 0..3 {
            for (_, step) in steps.iter().filter(|(s, _)| *s == slot) {
                match step {
                    Step::LocalToRemote => send(&mut local, &mut remote_rec),
                    Step::RemoteToLocal => send(&mut remote_rec, &mut local),
                }
            }
            if slot < 2 {
                time += 1;
                if edits.remove(0) {
                    remote_edit(&mut remote_rec, &remote, time);
                } else {
                    local.update(&patch, time).unwrap();
                }
            }
        }
        send(&mut local, &mut remote_rec);
        send(&mut remote_rec, &mut local);

        let (l, r) = (local.get_plain().unwrap().unwrap(), remote_rec.get_plain().unwrap().unwrap());
        prop_assert_eq!(&l, &r);
        let remote_path: &[&str] = if remote.nested { &["n", "x"] } else { &["a"] };
        prop_assert_eq!(field(&l, remote_path), Some(&remote.value.to_plain()));
        for (parent, fields) in [(None, &top), (Some("n"), &inner)] {
            for (name, change) in fields {
                let path: Vec<&str> = parent.into_iter().chain([name.as_str()]).collect();
                match change {
                    Local::Set(v) => prop_assert_eq!(field(&l, &path), Some(&v.to_plain())),
                    Local::Remove => prop_assert_eq!(field(&l, &path), None),
                }
            }
        }
    }
}

fn remote_edit(r: &mut Record, edit: &Remote, time: i64) {
    if edit.by_put {
        let Some(Value::Object(mut fields)) = r.get_plain().unwrap() else { panic!("the record exists") };
        if edit.nested {
            let Some(Value::Object(n)) = fields.get_mut("n") else { panic!("n is an object") };
            n.insert("x".into(), edit.value.clone());
        } else {
            fields.insert("a".into(), edit.value.clone());
        }
        r.put(&Value::Object(fields), time).unwrap();
    } else if edit.nested {
        r.update(&Patch::new().patch("n", Patch::new().set("x", edit.value.clone())), time).unwrap();
    } else {
        r.update(&Patch::new().set("a", edit.value.clone()), time).unwrap();
    }
}
