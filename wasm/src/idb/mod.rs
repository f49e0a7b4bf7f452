//! IndexedDB: the layout of a Tidepool database and the small helpers every access shares.
//!
//! Layout. Each app store is a plain object store (out-of-line keys, the app's indexes) holding
//! the current plain value of every live record, so ordinary IndexedDB code and dev tools can
//! read and query it. Beside them, stores named with the reserved `_tp_` prefix:
//!
//! | store             | key                         | value                                      |
//! |-------------------|-----------------------------|--------------------------------------------|
//! | `_tp_meta`        | name                        | actor, peer id, layout version, cursors    |
//! | `_tp_segments`    | segment number              | `{store, data}`: packed document chunks    |
//! | `_tp_registry`    | segment number              | `{store, data}`: the segment's documents   |
//! | `_tp_snapshots`   | `[store, key bytes, upto]`  | a saved document covering segments ≤ upto  |
//! | `_tp_outbox`      | segment number              | `{store, data}`: packed unsynced changes   |
//! | `_tp_acks`        | segment number              | packed acknowledged entries of that row    |
//! | `_tp_quarantine`  | auto                        | corrupt bytes kept for inspection          |
//!
//! A segment is what one write (a local put, a bulk put, a frame from the hub) added to the
//! documents: one row however many records it touched.

pub mod schema;
pub mod tx;

use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

/// App store names may not start with this; Tidepool's own stores do.
pub const RESERVED_PREFIX: &str = "_tp_";

pub const META: &str = "_tp_meta";
pub const SEGMENTS: &str = "_tp_segments";
pub const REGISTRY: &str = "_tp_registry";
pub const SNAPSHOTS: &str = "_tp_snapshots";
pub const OUTBOX: &str = "_tp_outbox";
pub const ACKS: &str = "_tp_acks";
pub const QUARANTINE: &str = "_tp_quarantine";

/// Every internal store, in creation order.
pub const INTERNAL: [&str; 7] = [META, SEGMENTS, REGISTRY, SNAPSHOTS, OUTBOX, ACKS, QUARANTINE];

/// Version of the internal layout, stored in `_tp_meta` so a future layout can migrate.
pub const LAYOUT_VERSION: u32 = 1;

pub fn bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

/// Bytes of a stored `Uint8Array` or `ArrayBuffer`.
pub fn to_bytes(value: &JsValue) -> Option<Vec<u8>> {
    if value.is_instance_of::<Uint8Array>() || value.is_instance_of::<js_sys::ArrayBuffer>() {
        Some(Uint8Array::new(value).to_vec())
    } else {
        None
    }
}

/// The `{store, data}` rows of the segment, registry and outbox stores.
pub fn row(store: &str, data: &[u8]) -> JsValue {
    let row = Object::new();
    let _ = Reflect::set(&row, &"store".into(), &store.into());
    let _ = Reflect::set(&row, &"data".into(), &bytes(data));
    row.into()
}

/// Reads a `{store, data}` row; `None` if it does not have that shape.
pub fn read_row(value: &JsValue) -> Option<(String, Vec<u8>)> {
    let store = Reflect::get(value, &"store".into()).ok()?.as_string()?;
    let data = to_bytes(&Reflect::get(value, &"data".into()).ok()?)?;
    Some((store, data))
}

/// The key of a snapshot row: `[store, key bytes, upto]`.
pub fn snapshot_key(store: &str, key: &[u8], upto: u64) -> JsValue {
    js_sys::Array::of3(&store.into(), &Uint8Array::from(key).buffer(), &JsValue::from_f64(upto as f64)).into()
}

/// The range of every snapshot row of one document.
pub fn snapshot_range(store: &str, key: &[u8]) -> Result<JsValue, JsValue> {
    let lower = snapshot_key(store, key, 0);
    let upper = js_sys::Array::of3(&store.into(), &Uint8Array::from(key).buffer(), &js_sys::Array::new());
    web_sys::IdbKeyRange::bound(&lower, &upper).map(Into::into)
}

/// Splits a snapshot row key back into (store, key bytes, upto).
pub fn read_snapshot_key(value: &JsValue) -> Option<(String, Vec<u8>, u64)> {
    let parts = value.dyn_ref::<js_sys::Array>()?;
    let store = parts.get(0).as_string()?;
    let key = to_bytes(&parts.get(1))?;
    let upto = parts.get(2).as_f64()?;
    Some((store, key, upto as u64))
}
