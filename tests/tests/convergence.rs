//! Convergence: any interleaving of edits on N replicas under any schedule of the simulated
//! network (loss, duplication, reordering, partitions, restarts) ends, after quiescence, with
//! every replica equal to the hub in values and heads.

use proptest::prelude::*;
use tidepool_core::{Key, StoreRef, Value};
use tidepool_tests::sim::{Edit, Faults, Sim};

#[derive(Debug, Clone)]
enum Action {
    Edit { peer: usize, store: usize, key: u8, edit: Edit },
    Deliver(u8),
    Connect(usize),
    Disconnect(usize),
    Partition(usize, bool),
    RestartPeer(usize, bool),
    RestartHub(bool),
    CompactHubLogs,
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(Value::Int),
        "[a-c]{0,3}".prop_map(Value::String),
        (0i64..3).prop_map(|d| Value::Date(1_700_000_000_000 + d)),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    let field = prop_oneof![Just("a"), Just("b"), Just("c")];
    let inner = prop_oneof![
        3 => arb_scalar(),
        1 => proptest::collection::vec(arb_scalar(), 0..4).prop_map(Value::Array),
    ];
    proptest::collection::btree_map(field.prop_map(str::to_owned), inner, 0..3).prop_map(Value::Object)
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => arb_value().prop_map(Edit::Put),
        1 => Just(Edit::Delete),
        2 => (-3i64..4).prop_map(|delta| Edit::Increment { field: "n".into(), delta }),
        2 => (0usize..3, 0usize..2, "[xy]{0,2}").prop_map(|(index, delete, text)| Edit::Splice {
            field: "t".into(), index, delete, text
        }),
    ]
}

fn arb_action(peers: usize) -> impl Strategy<Value = Action> {
    prop_oneof![
        10 => (0..peers, 0usize..2, 0u8..4, arb_edit())
            .prop_map(|(peer, store, key, edit)| Action::Edit { peer, store, key, edit }),
        8 => any::<u8>().prop_map(Action::Deliver),
        3 => (0..peers).prop_map(Action::Connect),
        1 => (0..peers).prop_map(Action::Disconnect),
        1 => (0..peers, any::<bool>()).prop_map(|(p, on)| Action::Partition(p, on)),
        1 => (0..peers, any::<bool>()).prop_map(|(p, keep)| Action::RestartPeer(p, keep)),
        1 => any::<bool>().prop_map(Action::RestartHub),
        1 => Just(Action::CompactHubLogs),
    ]
}

fn stores() -> Vec<StoreRef> {
    vec![StoreRef::new("app", "todos"), StoreRef::new("app", "notes")]
}

/// Runs a schedule and checks convergence; shared by the property and the regressions.
fn run(seed: u64, peers: usize, faults: Faults, actions: &[Action]) -> Result<(), String> {
    let mut sim = Sim::new(seed, peers, stores(), faults);
    for action in actions {
        match action {
            Action::Edit { peer, store, key, edit } => {
                // Edits the record model refuses (e.g. increment on a deleted record) are no-ops.
                let _ = sim.edit(*peer, *store, &Key::Number(f64::from(*key)), edit);
            }
            Action::Deliver(n) => {
                for _ in 0..*n {
                    sim.step();
                }
            }
            Action::Connect(p) => sim.connect(*p),
            Action::Disconnect(p) => sim.disconnect(*p),
            Action::Partition(p, on) => sim.partition(*p, *on),
            Action::RestartPeer(p, keep) => sim.restart_peer(*p, *keep),
            Action::RestartHub(keep) => sim.restart_hub(*keep),
            Action::CompactHubLogs => sim.compact_hub_logs(),
        }
    }
    sim.settle();
    sim.check_converged()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge(
        seed in any::<u64>(),
        peers in 2usize..5,
        cut in prop_oneof![Just(0.0), Just(0.02), Just(0.1)],
        duplicate in prop_oneof![Just(0.0), Just(0.05)],
        actions in proptest::collection::vec(arb_action(4), 0..60),
    ) {
        let actions: Vec<Action> = actions.into_iter().map(|a| clamp(a, peers)).collect();
        prop_assert_eq!(run(seed, peers, Faults { cut, duplicate }, &actions), Ok(()));
    }
}

/// Points actions at peers that exist, as loro's fuzzer clamps its sites.
fn clamp(action: Action, peers: usize) -> Action {
    match action {
        Action::Edit { peer, store, key, edit } => Action::Edit { peer: peer % peers, store, key, edit },
        Action::Connect(p) => Action::Connect(p % peers),
        Action::Disconnect(p) => Action::Disconnect(p % peers),
        Action::Partition(p, on) => Action::Partition(p % peers, on),
        Action::RestartPeer(p, keep) => Action::RestartPeer(p % peers, keep),
        other => other,
    }
}

fn put(peer: usize, key: u8, fields: &[(&str, i64)]) -> Action {
    let value = Value::Object(fields.iter().map(|(k, v)| ((*k).to_owned(), Value::Int(*v))).collect());
    Action::Edit { peer, store: 0, key, edit: Edit::Put(value) }
}

#[test]
fn offline_peer_with_many_edits_converges() {
    let mut actions = vec![Action::Connect(0)];
    for i in 0..200u8 {
        actions.push(put(1, i % 50, &[("a", i64::from(i))]));
        actions.push(put(0, i % 7, &[("b", i64::from(i))]));
    }
    actions.push(Action::Deliver(255));
    assert_eq!(run(1, 2, Faults::NONE, &actions), Ok(()));
}

#[test]
fn hub_losing_its_storage_is_repaired_from_clients() {
    let actions = vec![
        Action::Connect(0),
        Action::Connect(1),
        put(0, 1, &[("a", 1)]),
        put(1, 2, &[("b", 2)]),
        Action::Deliver(200),
        Action::RestartHub(false),
        put(0, 1, &[("a", 3)]),
        Action::Connect(0),
        Action::Deliver(200),
    ];
    assert_eq!(run(2, 2, Faults::NONE, &actions), Ok(()));
}

#[test]
fn compacted_log_falls_back_to_repair() {
    let actions = vec![
        Action::Connect(0),
        Action::Connect(1),
        put(0, 1, &[("a", 1)]),
        Action::Deliver(200),
        Action::Disconnect(1),
        put(0, 2, &[("a", 2)]),
        Action::Deliver(200),
        Action::CompactHubLogs,
        Action::Connect(1),
        Action::Deliver(200),
    ];
    assert_eq!(run(3, 2, Faults::NONE, &actions), Ok(()));
}

#[test]
fn peer_losing_its_storage_downloads_everything() {
    let actions = vec![
        Action::Connect(0),
        put(0, 1, &[("a", 1)]),
        put(0, 2, &[("a", 2)]),
        Action::Deliver(200),
        Action::RestartPeer(0, false),
        Action::RestartPeer(1, false),
    ];
    assert_eq!(run(4, 2, Faults::NONE, &actions), Ok(()));
}

fn empty() -> Edit {
    Edit::Put(Value::Object(Default::default()))
}

/// Peer 2's delete reaches the new hub before the put it depends on, and waits there; peer 0's
/// re-pushed put completes it. The delete is new to peer 0 too: it must reach it, live and from
/// the log. (Found by `replicas_converge`.)
#[test]
fn a_change_completed_by_someone_elses_push_reaches_the_pusher() {
    let actions = [
        Action::Edit { peer: 0, store: 0, key: 2, edit: empty() },
        Action::Connect(0),
        Action::Connect(2),
        Action::Edit { peer: 0, store: 0, key: 0, edit: empty() },
        Action::Deliver(13),
        Action::Edit { peer: 2, store: 0, key: 2, edit: Edit::Delete },
        Action::Edit { peer: 2, store: 1, key: 0, edit: empty() },
        Action::RestartHub(false),
        Action::Connect(1),
        Action::Deliver(1),
    ];
    assert_eq!(run(12698767000929823126, 3, Faults { cut: 0.1, duplicate: 0.0 }, &actions), Ok(()));
}

/// Peer 1's first download is cut off before any cursor arrives, and then the hub loses its
/// storage: peer 1 must resume as "holding documents", so the hub gets them back by repair.
/// (Found by `replicas_converge`.)
#[test]
fn an_interrupted_first_download_is_not_taken_for_an_empty_replica() {
    let actions = [
        Action::Connect(2),
        Action::Edit { peer: 2, store: 0, key: 0, edit: empty() },
        Action::RestartPeer(0, false),
        Action::Deliver(7),
        Action::RestartPeer(2, false),
        Action::Connect(1),
        Action::RestartPeer(0, true),
        Action::Deliver(5),
        Action::RestartHub(false),
    ];
    assert_eq!(run(8607746500248073654, 4, Faults { cut: 0.02, duplicate: 0.0 }, &actions), Ok(()));
}
