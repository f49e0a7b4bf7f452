//! Helpers shared by the browser tests: promises, JSON-built values, raw IndexedDB access.
#![allow(dead_code, clippy::unwrap_used)]

use js_sys::{Array, Promise, Reflect};
use tidepool_wasm::Tidepool;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

pub async fn wait(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

/// Awaits a promise that must resolve.
pub async fn ok(promise: Promise) -> JsValue {
    match wait(promise).await {
        Ok(v) => v,
        Err(e) => panic!("expected success, got {}", describe(&e)),
    }
}

/// Awaits a promise that must reject with a TidepoolError; returns its code.
pub async fn err(promise: Promise) -> String {
    match wait(promise).await {
        Ok(v) => panic!("expected a rejection, got {v:?}"),
        Err(e) => code(&e),
    }
}

pub fn code(error: &JsValue) -> String {
    assert!(error.is_instance_of::<js_sys::Error>(), "not an Error: {error:?}");
    Reflect::get(error, &"code".into()).ok().and_then(|c| c.as_string()).unwrap_or_else(|| panic!("no code on {}", describe(error)))
}

pub fn describe(error: &JsValue) -> String {
    let message = Reflect::get(error, &"message".into()).ok().and_then(|m| m.as_string());
    let code = Reflect::get(error, &"code".into()).ok().and_then(|m| m.as_string());
    format!("{code:?}: {message:?} ({error:?})")
}

pub fn json(text: &str) -> JsValue {
    js_sys::JSON::parse(text).unwrap_or_else(|e| panic!("bad JSON in test: {text}: {e:?}"))
}

pub fn stringify(value: &JsValue) -> String {
    js_sys::JSON::stringify(value).map(String::from).unwrap_or_default()
}

pub fn get(value: &JsValue, field: &str) -> JsValue {
    Reflect::get(value, &field.into()).unwrap_or(JsValue::UNDEFINED)
}

pub fn set(value: &JsValue, field: &str, v: impl Into<JsValue>) {
    Reflect::set(value, &field.into(), &v.into()).unwrap();
}

/// A database name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", js_sys::Date::now() as u64, (js_sys::Math::random() * 1e9) as u64)
}

pub async fn open(options: JsValue) -> Tidepool {
    let db = ok(Tidepool::open(options)).await;
    <Tidepool as wasm_bindgen::convert::TryFromJsValue>::try_from_js_value(db).expect("open resolves to a Tidepool")
}

pub async fn open_json(text: &str) -> Tidepool {
    open(json(text)).await
}

#[wasm_bindgen(inline_js = r#"
export function raw_open(name) {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(name);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
function done(req) {
  return new Promise((resolve, reject) => { req.onsuccess = () => resolve(req.result); req.onerror = () => reject(req.error); });
}
export async function raw_get_all(name, store) {
  const db = await raw_open(name);
  try { return await done(db.transaction(store).objectStore(store).getAll()); } finally { db.close(); }
}
export async function raw_get_all_keys(name, store) {
  const db = await raw_open(name);
  try { return await done(db.transaction(store).objectStore(store).getAllKeys()); } finally { db.close(); }
}
export async function raw_put(name, store, key, value) {
  const db = await raw_open(name);
  try {
    const tx = db.transaction(store, "readwrite");
    if (key === undefined) tx.objectStore(store).put(value); else tx.objectStore(store).put(value, key);
    await new Promise((resolve, reject) => { tx.oncomplete = resolve; tx.onerror = () => reject(tx.error); tx.onabort = () => reject(tx.error); });
  } finally { db.close(); }
}
export async function raw_delete(name, store, key) {
  const db = await raw_open(name);
  try {
    const tx = db.transaction(store, "readwrite");
    tx.objectStore(store).delete(key);
    await new Promise((resolve, reject) => { tx.oncomplete = resolve; tx.onerror = () => reject(tx.error); });
  } finally { db.close(); }
}
export async function raw_index_names(name, store) {
  const db = await raw_open(name);
  try { return Array.from(db.transaction(store).objectStore(store).indexNames); } finally { db.close(); }
}
export function make_map() { return new Map([["a", 1]]); }
export function make_class_instance() { class Point { constructor() { this.x = 1; } } return new Point(); }
export function make_function() { return () => 1; }
export function make_symbol() { return Symbol("s"); }
export function with_undefined_field() { return { a: 1, b: undefined }; }
export function sparse_array() { const a = [1]; a[2] = 3; return a; }
export function big(n) { return BigInt(n); }
export function deep_equal(a, b) {
  const norm = (v) => {
    if (v instanceof Date) return { $date: v.getTime() };
    if (v instanceof Uint8Array) return { $bytes: Array.from(v) };
    if (v instanceof ArrayBuffer) return { $buffer: Array.from(new Uint8Array(v)) };
    if (typeof v === "bigint") return { $big: v.toString() };
    if (Object.is(v, -0)) return { $negzero: true };
    if (Array.isArray(v)) return v.map(norm);
    if (v && typeof v === "object") { const o = {}; for (const k of Object.keys(v).sort()) o[k] = norm(v[k]); return o; }
    return v;
  };
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}
"#)]
extern "C" {
    pub fn raw_open(name: &str) -> Promise;
    pub fn raw_get_all(name: &str, store: &str) -> Promise;
    pub fn raw_get_all_keys(name: &str, store: &str) -> Promise;
    pub fn raw_put(name: &str, store: &str, key: &JsValue, value: &JsValue) -> Promise;
    pub fn raw_delete(name: &str, store: &str, key: &JsValue) -> Promise;
    pub fn raw_index_names(name: &str, store: &str) -> Promise;
    pub fn make_map() -> JsValue;
    pub fn make_class_instance() -> JsValue;
    pub fn make_function() -> JsValue;
    pub fn make_symbol() -> JsValue;
    pub fn with_undefined_field() -> JsValue;
    pub fn sparse_array() -> JsValue;
    pub fn big(n: &str) -> JsValue;
    pub fn deep_equal(a: &JsValue, b: &JsValue) -> bool;
}

pub async fn raw_all(name: &str, store: &str) -> Array {
    ok(raw_get_all(name, store)).await.unchecked_into()
}

pub async fn raw_keys(name: &str, store: &str) -> Array {
    ok(raw_get_all_keys(name, store)).await.unchecked_into()
}

pub fn assert_same(actual: &JsValue, expected: &JsValue) {
    assert!(deep_equal(actual, expected), "expected {} but got {}", stringify(expected), stringify(actual));
}

/// `verify()` must report no mismatch; returns (documents, plain rows).
pub async fn assert_consistent(db: &Tidepool, store: &str) -> (u32, u32) {
    let report = ok(db.verify(store.into())).await;
    let mismatches: Array = get(&report, "mismatches").unchecked_into();
    assert_eq!(mismatches.length(), 0, "plain store and documents disagree on {}", stringify(&mismatches));
    (get(&report, "documents").as_f64().unwrap() as u32, get(&report, "plain").as_f64().unwrap() as u32)
}
