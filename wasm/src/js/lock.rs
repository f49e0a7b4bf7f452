//! Exclusive Web Locks: the tabs of one database take the write lock for each operation that
//! writes, and the leader lock for as long as they lead (see `tabs`). The browser releases a lock
//! when the page holding it closes or crashes.

use futures_channel::oneshot;
use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::error::Error;

/// Releases the lock when dropped.
#[derive(Debug)]
pub struct Lock {
    release: Function,
    _callback: Closure<dyn FnMut(JsValue) -> JsValue>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.release.call0(&JsValue::NULL);
    }
}

/// Takes the lock `name` if nobody holds it, or (`wait`) once its holder releases it: the browser
/// releases a lock when its page closes or crashes, so a waiting tab takes over. `Ok(None)` where the Web Locks API is missing
/// (insecure contexts, old browsers): the database then opens unguarded, as before locks existed.
pub async fn acquire(name: &str, wait: bool) -> Result<Option<Lock>, Error> {
    let locks = Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"locks".into()))
        .ok()
        .filter(|l| l.is_object());
    let Some(locks) = locks else {
        web_sys::console::warn_1(&"tidepool: the Web Locks API is unavailable; a second tab could open the same database".into());
        return Ok(None);
    };
    let request: Function = Reflect::get(&locks, &"request".into())
        .ok()
        .and_then(|r| r.dyn_into().ok())
        .ok_or_else(|| Error::Internal("navigator.locks.request is not a function".into()))?;
    let (tx, rx) = oneshot::channel::<Option<Function>>();
    let mut tx = Some(tx);
    let callback = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |lock: JsValue| {
        let Some(tx) = tx.take() else { return JsValue::UNDEFINED };
        if lock.is_null() {
            let _ = tx.send(None);
            return JsValue::UNDEFINED;
        }
        // The lock is held until this promise settles, i.e. until `Lock` is dropped.
        let mut release = None;
        let held = Promise::new(&mut |resolve, _| release = Some(resolve));
        let _ = tx.send(release);
        held.into()
    });
    let options = Object::new();
    let _ = Reflect::set(&options, &"ifAvailable".into(), &(!wait).into());
    let name = JsValue::from_str(&format!("tidepool:{name}"));
    request
        .call3(&locks, &name, &options, callback.as_ref().unchecked_ref())
        .map_err(|e| Error::Internal(format!("navigator.locks.request failed: {e:?}")))?;
    match rx.await {
        Ok(Some(release)) => Ok(Some(Lock { release, _callback: callback })),
        Ok(None) => Err(Error::InUse(name.as_string().unwrap_or_default())),
        Err(_) => Err(Error::Internal("the lock request was dropped".into())),
    }
}
