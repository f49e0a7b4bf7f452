//! The JavaScript API: `Tidepool` and its methods, each a thin shell that converts arguments,
//! runs one client operation and turns failures into `TidepoolError`s with a `code`.

use std::future::Future;
use std::pin::pin;
use std::rc::Rc;

use futures_util::future::{Either, select};
use js_sys::{Array, Function, Promise, Reflect};
use tidepool_core::Key;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::client::local::{self, Edit};
use crate::client::read::{self, Shape};
use crate::client::shared::Shared;
use crate::client::{maintain, open, verify};
use crate::error::Error;
use crate::events::Origin;
use crate::js::{global, key as js_key, patch as js_patch, path as js_path, value as js_value};
use crate::options::OpenOptions;
use crate::tabs::message::Message;
use crate::sync::driver::COMPACT_STEP;
use crate::tabs::{Tabs, leader};

/// An offline-first database: IndexedDB records that sync through a Tidepool hub.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Tidepool {
    shared: Rc<Shared>,
    stores: Vec<String>,
    name: String,
}

fn promise<F>(work: F) -> Promise
where
    F: Future<Output = Result<JsValue, Error>> + 'static,
{
    future_to_promise(async move { work.await.map_err(JsValue::from) })
}

/// Runs a write with exclusive access, sends what the engine queued, compacts a little if
/// segments piled up, then tells listeners.
async fn write(shared: &Shared, store: &str, edits: Vec<(Key, Edit)>) -> Result<(), Error> {
    let mut guard = shared.exclusive().await?;
    let state = guard.as_mut().ok_or(Error::Closed)?;
    let result = local::write(state, store, edits).await;
    if result.is_ok() {
        shared.tabs.wrote(state.generation);
    }
    shared.flush(state).await;
    let written = result?;
    shared.compact_a_little(state).await;
    drop(guard);
    shared.emit(store, Origin::Local, &written);
    Ok(())
}

fn safe_integer(n: f64, what: &str) -> Result<i64, Error> {
    if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_991.0 {
        Ok(n as i64)
    } else {
        Err(Error::BadValue(format!("{what} must be a safe integer, not {n}")))
    }
}

fn index(n: f64, what: &str) -> Result<usize, Error> {
    match safe_integer(n, what) {
        Ok(i) if i >= 0 => Ok(i as usize),
        _ => Err(Error::OutOfRange(format!("{what} must be a non-negative integer, not {n}"))),
    }
}

/// Reads bulkPut's entries: `[key, value]` pairs or `{key, value}` objects.
fn entries(value: &JsValue) -> Result<Vec<(Key, Edit)>, Error> {
    let list = value.dyn_ref::<Array>().ok_or_else(|| Error::BadValue("bulkPut takes an array of entries".into()))?;
    let mut out = Vec::with_capacity(list.length() as usize);
    for (i, entry) in list.iter().enumerate() {
        let (key, value) = if let Some(pair) = entry.dyn_ref::<Array>() {
            (pair.get(0), pair.get(1))
        } else if entry.is_object() {
            (Reflect::get(&entry, &"key".into()).unwrap_or_default(), Reflect::get(&entry, &"value".into()).unwrap_or_default())
        } else {
            return Err(Error::BadValue(format!("entry {i} is neither [key, value] nor {{key, value}}")));
        };
        let key = js_key::from_js(&key).map_err(|e| Error::BadKey(format!("entry {i}: {e}")))?;
        let value = js_value::from_js(&value).map_err(|e| Error::BadValue(format!("entry {i}: {e}")))?;
        out.push((key, Edit::Put(value)));
    }
    Ok(out)
}

#[wasm_bindgen]
impl Tidepool {
    /// Opens (creating or upgrading) a database and, if a hub is given, starts syncing.
    #[wasm_bindgen(unchecked_return_type = "Promise<Tidepool>")]
    pub fn open(#[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue) -> Promise {
        promise(async move {
            let options = OpenOptions::from_js(&options)?;
            let state = open::open(&options).await?;
            let shared = Rc::new(Shared::new(state, Tabs::new(options.local_name.clone(), options.hub.clone())));
            shared.link.borrow_mut().want_online = options.online;
            // Leads (and connects) if no other tab of this database does, else follows.
            leader::join(&shared).await;
            {
                let guard = shared.lock().await;
                shared.refresh_status(guard.as_ref());
            }
            let stores = options.stores.iter().map(|s| s.name.clone()).collect();
            Ok(Tidepool { shared, stores, name: options.local_name }.into())
        })
    }

    /// Deletes a database and everything in it (close it first).
    #[wasm_bindgen(js_name = deleteDatabase, unchecked_return_type = "Promise<void>")]
    pub fn delete_database(name: String) -> Promise {
        promise(async move {
            indexed_db_futures::database::Database::delete_by_name(&name)?.await.map_err(Error::from)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The IndexedDB database name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Writes `value` as the record `key` of `store`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn put(&self, store: String, #[wasm_bindgen(unchecked_param_type = "TidepoolKey")] key: JsValue, value: JsValue) -> Promise {
        let shared = self.shared.clone();
        // Converted now, as IndexedDB clones at call time: later mutations by the caller do not leak in.
        let edit = js_key::from_js(&key).and_then(|k| Ok((k, Edit::Put(js_value::from_js(&value)?))));
        promise(async move {
            write(&shared, &store, vec![edit?]).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Changes only the fields named in `changes`, on top of the record's current state, in one
    /// transaction: a remote edit of another field, before or after, survives (a `put` of a copy
    /// read earlier would revert it). A nested plain object changes the fields it names inside
    /// that field's object; `undefined` removes a field; anything else is the field's new value.
    /// A record that does not exist becomes the object of the given fields.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn update(
        &self,
        store: String,
        #[wasm_bindgen(unchecked_param_type = "TidepoolKey")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "TidepoolChanges")] changes: JsValue,
    ) -> Promise {
        let shared = self.shared.clone();
        // Converted now, like put's value: later mutations by the caller do not leak in.
        let edit = js_key::from_js(&key).and_then(|k| Ok((k, Edit::Update(js_patch::from_js(&changes)?))));
        promise(async move {
            write(&shared, &store, vec![edit?]).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Writes many records in one transaction: `[[key, value], ...]` or `[{key, value}, ...]`.
    #[wasm_bindgen(js_name = bulkPut, unchecked_return_type = "Promise<void>")]
    pub fn bulk_put(&self, store: String, #[wasm_bindgen(unchecked_param_type = "Array<[TidepoolKey, unknown] | { key: TidepoolKey; value: unknown }>")] entries: JsValue) -> Promise {
        let shared = self.shared.clone();
        let edits = self::entries(&entries);
        promise(async move {
            write(&shared, &store, edits?).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Deletes a record (a tombstone that syncs; a concurrent edit elsewhere brings it back).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn delete(&self, store: String, #[wasm_bindgen(unchecked_param_type = "TidepoolKey")] key: JsValue) -> Promise {
        let shared = self.shared.clone();
        let key = js_key::from_js(&key);
        promise(async move {
            write(&shared, &store, vec![(key?, Edit::Delete)]).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Adds `delta` to the counter at `path`; concurrent increments add up.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn increment(
        &self,
        store: String,
        #[wasm_bindgen(unchecked_param_type = "TidepoolKey")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "TidepoolPath")] path: JsValue,
        delta: f64,
    ) -> Promise {
        let shared = self.shared.clone();
        let edit = (|| -> Result<(Key, Edit), Error> { Ok((js_key::from_js(&key)?, Edit::Increment { path: js_path::from_js(&path)?, delta: safe_integer(delta, "delta")? })) })();
        promise(async move {
            write(&shared, &store, vec![edit?]).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Splices collaborative text at `path` (indexes in UTF-16 code units, as JavaScript counts).
    #[wasm_bindgen(js_name = spliceText, unchecked_return_type = "Promise<void>")]
    pub fn splice_text(
        &self,
        store: String,
        #[wasm_bindgen(unchecked_param_type = "TidepoolKey")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "TidepoolPath")] path: JsValue,
        index: f64,
        #[wasm_bindgen(js_name = deleteCount)] delete_count: f64,
        text: String,
    ) -> Promise {
        let shared = self.shared.clone();
        let edit = (|| -> Result<(Key, Edit), Error> {
            let splice = Edit::Splice { path: js_path::from_js(&path)?, index: self::index(index, "index")?, delete: self::index(delete_count, "deleteCount")?, text };
            Ok((js_key::from_js(&key)?, splice))
        })();
        promise(async move {
            write(&shared, &store, vec![edit?]).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The record's current value, or `undefined`.
    #[wasm_bindgen(unchecked_return_type = "Promise<unknown>")]
    pub fn get(&self, store: String, #[wasm_bindgen(unchecked_param_type = "TidepoolKey")] key: JsValue) -> Promise {
        let shared = self.shared.clone();
        promise(async move {
            let guard = shared.lock().await;
            read::get(guard.as_ref().ok_or(Error::Closed)?, &store, &key).await
        })
    }

    /// Every value in `range` (an `IDBKeyRange` or a key; everything if omitted), in key order.
    #[wasm_bindgen(js_name = getAll, unchecked_return_type = "Promise<unknown[]>")]
    pub fn get_all(&self, store: String, #[wasm_bindgen(unchecked_optional_param_type = "IDBKeyRange | TidepoolKey | null")] range: Option<JsValue>, #[wasm_bindgen(unchecked_optional_param_type = "number")] count: Option<u32>) -> Promise {
        self.read(store, ReadShape::Values, range, count)
    }

    /// Every key in `range`, in order.
    #[wasm_bindgen(js_name = getAllKeys, unchecked_return_type = "Promise<TidepoolKey[]>")]
    pub fn get_all_keys(&self, store: String, #[wasm_bindgen(unchecked_optional_param_type = "IDBKeyRange | TidepoolKey | null")] range: Option<JsValue>, #[wasm_bindgen(unchecked_optional_param_type = "number")] count: Option<u32>) -> Promise {
        self.read(store, ReadShape::Keys, range, count)
    }

    /// Values whose `index` key is in `range`, in index order.
    #[wasm_bindgen(unchecked_return_type = "Promise<unknown[]>")]
    pub fn query(&self, store: String, index: String, #[wasm_bindgen(unchecked_optional_param_type = "IDBKeyRange | TidepoolKey | null")] range: Option<JsValue>, #[wasm_bindgen(unchecked_optional_param_type = "number")] count: Option<u32>) -> Promise {
        self.read(store, ReadShape::Index(index), range, count)
    }

    /// Calls `callback` with a change event after every write to `store`, whatever its origin.
    /// Returns an id for `unsubscribe`.
    pub fn subscribe(&self, store: String, #[wasm_bindgen(unchecked_param_type = "(event: ChangeEvent) => void")] callback: Function) -> Result<u32, JsValue> {
        if !self.stores.contains(&store) {
            return Err(Error::UnknownStore(store).into());
        }
        Ok(self.shared.listeners.borrow_mut().on_change(&store, callback))
    }

    /// Calls `callback` with the new status whenever it changes. Returns an id for `unsubscribe`.
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(&self, #[wasm_bindgen(unchecked_param_type = "(status: Status) => void")] callback: Function) -> u32 {
        self.shared.listeners.borrow_mut().on_status(callback)
    }

    pub fn unsubscribe(&self, id: u32) -> bool {
        self.shared.listeners.borrow_mut().remove(id)
    }

    /// Connection, unsynced changes, whether everything is synced, and the last error.
    #[wasm_bindgen(unchecked_return_type = "Status")]
    pub fn status(&self) -> JsValue {
        self.shared.status().to_js()
    }

    /// Connects to the hub (`true`) or stays offline (`false`); edits work either way. Applies
    /// to every tab of the database (one of them holds the connection).
    #[wasm_bindgen(js_name = setOnline)]
    pub fn set_online(&self, online: bool) -> Result<(), JsValue> {
        if self.shared.tabs.hub.is_none() {
            return Err(Error::NoHub.into());
        }
        let mut link = self.shared.link.borrow_mut();
        link.want_online = online;
        link.wake();
        drop(link);
        self.shared.tabs.post(&Message::Online(online));
        Ok(())
    }

    /// Resolves once online, caught up and with no unacknowledged change; rejects with
    /// `timeout`, `auth_rejected`, `no_hub` or `closed`.
    #[wasm_bindgen(js_name = whenSynced, unchecked_return_type = "Promise<void>")]
    pub fn when_synced(&self, #[wasm_bindgen(js_name = timeoutMs)] timeout_ms: Option<u32>) -> Promise {
        let waiter = self.shared.when_synced();
        promise(async move {
            let outcome = match timeout_ms {
                None => waiter.await,
                Some(ms) => match select(waiter, pin!(global::sleep(ms))).await {
                    Either::Left((outcome, _)) => outcome,
                    Either::Right(_) => return Err(Error::Timeout(ms)),
                },
            };
            outcome.map_err(|_| Error::Closed)??;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Folds every segment into per-record snapshots (Tidepool also does this a little at a time).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn compact(&self) -> Promise {
        let shared = self.shared.clone();
        promise(async move {
            let mut guard = shared.exclusive().await?;
            let state = guard.as_mut().ok_or(Error::Closed)?;
            while maintain::compact(state, COMPACT_STEP).await? {}
            shared.flush(state).await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Compares the plain store with the documents: `{documents, plain, mismatches: [key...]}`.
    /// A diagnostic that loads every document of the store.
    #[wasm_bindgen(unchecked_return_type = "Promise<{ documents: number; plain: number; mismatches: TidepoolKey[] }>")]
    pub fn verify(&self, store: String) -> Promise {
        let shared = self.shared.clone();
        promise(async move {
            let mut guard = shared.exclusive().await?;
            let state = guard.as_mut().ok_or(Error::Closed)?;
            let report = verify::verify(state, &store).await;
            shared.flush(state).await;
            report
        })
    }

    /// Stops syncing and closes the database; later calls fail with `closed`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let shared = self.shared.clone();
        promise(async move {
            {
                let mut link = shared.link.borrow_mut();
                link.closed = true;
                link.wake();
                link.socket = None;
                link.open = false;
            }
            let state = shared.lock().await.take();
            if let Some(state) = state {
                state.db.close();
            }
            // Releasing the leader lock hands the lead to another tab, which reads storage anew.
            shared.tabs.leader_lock.borrow_mut().take();
            if let Some(abort) = shared.tabs.abort_wait.borrow_mut().take() {
                abort.abort();
            }
            shared.tabs.channel.borrow_mut().take();
            shared.refresh_status(None);
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// What a read returns, owned so it can move into the read's future.
enum ReadShape {
    Values,
    Index(String),
    Keys,
}

impl Tidepool {
    fn read(&self, store: String, shape: ReadShape, range: Option<JsValue>, count: Option<u32>) -> Promise {
        let shared = self.shared.clone();
        let range = read::range(&range.unwrap_or(JsValue::UNDEFINED));
        promise(async move {
            let range = range?;
            let guard = shared.lock().await;
            let state = guard.as_ref().ok_or(Error::Closed)?;
            let shape = match &shape {
                ReadShape::Values => Shape::Values { index: None },
                ReadShape::Index(name) => Shape::Values { index: Some(name) },
                ReadShape::Keys => Shape::Keys,
            };
            Ok(read::get_all(state, &store, shape, range, count).await?.into())
        })
    }
}
