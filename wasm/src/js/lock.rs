//! Exclusive Web Locks: the tabs of one database take the write lock for each operation that
//! writes, and the leader lock for as long as they lead (see `tabs`). The browser releases a lock
//! when the page holding it closes or crashes.

use std::cell::RefCell;
use std::rc::Rc;

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
    _on_reject: Closure<dyn FnMut(JsValue)>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.release.call0(&JsValue::NULL);
    }
}

/// Takes the lock `name` if nobody holds it, or (`wait`) once its holder releases it: the browser
/// releases a lock when its page closes or crashes, so a waiting tab takes over. A wait ends with
/// `closed` when `abort` (an `AbortSignal`) fires. `Ok(None)` where the Web Locks API is missing
/// (insecure contexts, old browsers): tabs then cannot coordinate.
pub async fn acquire(name: &str, wait: bool, abort: Option<&web_sys::AbortSignal>) -> Result<Option<Lock>, Error> {
    let locks = Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"locks".into()))
        .ok()
        .filter(|l| l.is_object());
    let Some(locks) = locks else {
        web_sys::console::warn_1(&"tidepool: the Web Locks API is unavailable; tabs of one database cannot coordinate".into());
        return Ok(None);
    };
    let request: Function = Reflect::get(&locks, &"request".into())
        .ok()
        .and_then(|r| r.dyn_into().ok())
        .ok_or_else(|| Error::Internal("navigator.locks.request is not a function".into()))?;
    let (tx, rx) = oneshot::channel::<Option<Function>>();
    // Shared with the rejection handler: an aborted wait settles the request without a callback.
    let tx = Rc::new(RefCell::new(Some(tx)));
    let granted = tx.clone();
    let callback = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |lock: JsValue| {
        let Some(tx) = granted.borrow_mut().take() else { return JsValue::UNDEFINED };
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
    if let (true, Some(abort)) = (wait, abort) {
        let _ = Reflect::set(&options, &"signal".into(), abort);
    }
    let name = JsValue::from_str(&format!("tidepool:{name}"));
    let requested = request
        .call3(&locks, &name, &options, callback.as_ref().unchecked_ref())
        .map_err(|e| Error::Internal(format!("navigator.locks.request failed: {e:?}")))?;
    // The request is rejected when the wait is aborted; dropping the sender ends the wait below.
    let on_reject = Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| drop(tx.borrow_mut().take()));
    if let Ok(requested) = requested.dyn_into::<Promise>() {
        let _ = requested.catch(&on_reject);
    }
    match rx.await {
        Ok(Some(release)) => Ok(Some(Lock { release, _callback: callback, _on_reject: on_reject })),
        Ok(None) => Err(Error::InUse(name.as_string().unwrap_or_default())),
        Err(_) => Err(Error::Closed),
    }
}
