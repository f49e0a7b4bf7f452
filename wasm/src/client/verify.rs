//! A consistency check: does every plain record equal its document's plain value?
//!
//! The invariant Tidepool maintains is that the plain store is a projection of the documents.
//! This check loads every document of a store (so it is a diagnostic, not a hot path) and
//! reports the keys where the two disagree, including plain rows without a live document.

use std::collections::HashMap;

use indexed_db_futures::prelude::*;
use js_sys::{Array, Object, Reflect};
use tidepool_core::{DocId, Value};
use wasm_bindgen::JsValue;

use crate::client::State;
use crate::error::Error;
use crate::idb::tx;
use crate::js::{key as js_key, value as js_value};

/// Documents loaded per step, so checking a large store does not hold it all in memory.
const STEP: usize = 1024;

pub async fn verify(state: &mut State, store: &str) -> Result<JsValue, Error> {
    state.check_store(store)?;
    let tx = tx::read(&state.db, &[store])?;
    let plain_store = tx.object_store(store)?;
    let keys = plain_store.get_all_keys::<JsValue>().primitive()?;
    let values = plain_store.get_all::<JsValue>().primitive()?;
    let keys: Vec<JsValue> = keys.await?.collect::<Result<_, _>>()?;
    let values: Vec<JsValue> = values.await?.collect::<Result<_, _>>()?;
    drop(tx);
    let mut plain: HashMap<Vec<u8>, (JsValue, Option<Value>)> = HashMap::new();
    for (key, value) in keys.into_iter().zip(values) {
        let encoded = js_key::from_js(&key)?.encode()?;
        // A plain value Tidepool could not have written counts as a mismatch, not an error.
        plain.insert(encoded, (key, js_value::from_js(&value).ok()));
    }
    let plain_count = plain.len();
    let mismatches = Array::new();
    let mut live = 0usize;
    let docs = state.known.docs_of(store);
    for step in docs.chunks(STEP) {
        let ids: Vec<DocId> = step.iter().map(|(d, _)| *d).collect();
        state.ensure_loaded(&ids).await?;
        for (doc, key) in step {
            let Some(record) = state.cache.get_mut(doc) else { continue };
            let document = record.get_plain()?;
            live += usize::from(document.is_some());
            let stored = plain.remove(key);
            let agree = match (&document, &stored) {
                (None, None) => true,
                (Some(d), Some((_, Some(p)))) => d == p,
                _ => false,
            };
            if !agree {
                mismatches.push(&js_key::encoded_to_js(key)?);
            }
        }
        state.cache.trim();
    }
    for (_, (key, _)) in plain {
        mismatches.push(&key);
    }
    let report = Object::new();
    let _ = Reflect::set(&report, &"documents".into(), &(live as f64).into());
    let _ = Reflect::set(&report, &"plain".into(), &(plain_count as f64).into());
    let _ = Reflect::set(&report, &"mismatches".into(), &mismatches);
    Ok(report.into())
}
