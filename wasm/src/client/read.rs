//! Reads: straight from the plain stores, the same data any IndexedDB code sees. No document is
//! loaded to answer a read.

use indexed_db_futures::KeyRange;
use indexed_db_futures::prelude::*;
use js_sys::Array;
use wasm_bindgen::{JsCast, JsValue};

use crate::client::State;
use crate::error::Error;
use crate::idb::tx;
use crate::js::key as js_key;

/// What to read: records or only their keys, from the store or one of its indexes.
#[derive(Debug, Clone, Copy)]
pub enum Shape<'a> {
    Values { index: Option<&'a str> },
    Keys,
}

/// A key range from JavaScript: an `IDBKeyRange`, a single key, or nothing (everything).
pub fn range(value: &JsValue) -> Result<Option<JsValue>, Error> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    if value.is_instance_of::<web_sys::IdbKeyRange>() {
        return Ok(Some(value.clone()));
    }
    js_key::from_js(value).map_err(|e| Error::BadRange(format!("expected an IDBKeyRange or a key ({e})")))?;
    Ok(Some(value.clone()))
}

pub async fn get(state: &State, store: &str, key: &JsValue) -> Result<JsValue, Error> {
    state.check_store(store)?;
    js_key::from_js(key)?;
    let tx = tx::read(&state.db, &[store])?;
    let found = tx.object_store(store)?.get::<JsValue, JsValue, _>(key.clone()).primitive()?.await?;
    Ok(found.unwrap_or(JsValue::UNDEFINED))
}

pub async fn get_all(state: &State, store: &str, shape: Shape<'_>, query: Option<JsValue>, count: Option<u32>) -> Result<Array, Error> {
    state.check_store(store)?;
    let tx = tx::read(&state.db, &[store])?;
    let object_store = tx.object_store(store)?;
    let query = query.map(KeyRange::Only);
    let items: Vec<JsValue> = match shape {
        Shape::Values { index: Some(name) } => {
            let index = object_store.index(name).map_err(|_| Error::UnknownIndex { store: store.into(), index: name.into() })?;
            let builder = index.get_all::<JsValue>();
            match (query, count) {
                (Some(q), Some(n)) => builder.with_query::<JsValue, _>(q).with_limit(n).primitive()?.await?.collect::<Result<_, _>>()?,
                (Some(q), None) => builder.with_query::<JsValue, _>(q).primitive()?.await?.collect::<Result<_, _>>()?,
                (None, Some(n)) => builder.with_limit(n).primitive()?.await?.collect::<Result<_, _>>()?,
                (None, None) => builder.primitive()?.await?.collect::<Result<_, _>>()?,
            }
        }
        Shape::Values { index: None } => {
            let builder = object_store.get_all::<JsValue>();
            match (query, count) {
                (Some(q), Some(n)) => builder.with_query::<JsValue, _>(q).with_limit(n).primitive()?.await?.collect::<Result<_, _>>()?,
                (Some(q), None) => builder.with_query::<JsValue, _>(q).primitive()?.await?.collect::<Result<_, _>>()?,
                (None, Some(n)) => builder.with_limit(n).primitive()?.await?.collect::<Result<_, _>>()?,
                (None, None) => builder.primitive()?.await?.collect::<Result<_, _>>()?,
            }
        }
        Shape::Keys => {
            let builder = object_store.get_all_keys::<JsValue>();
            match (query, count) {
                (Some(q), Some(n)) => builder.with_query::<JsValue, _>(q).with_limit(n).primitive()?.await?.collect::<Result<_, _>>()?,
                (Some(q), None) => builder.with_query::<JsValue, _>(q).primitive()?.await?.collect::<Result<_, _>>()?,
                (None, Some(n)) => builder.with_limit(n).primitive()?.await?.collect::<Result<_, _>>()?,
                (None, None) => builder.primitive()?.await?.collect::<Result<_, _>>()?,
            }
        }
    };
    Ok(items.into_iter().collect())
}
