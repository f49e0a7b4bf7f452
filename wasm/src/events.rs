//! Change and status listeners, and the event objects they receive.
//!
//! A change event covers one write: `{store, origin, changes: [{key, type, value}]}` where origin
//! is `local` (this client), `remote` (another client through the hub) or `analytics` (a
//! write-back from the bridge). A listener that throws is reported on the console and does not
//! disturb Tidepool or other listeners.

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::JsValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Local,
    Remote,
    Analytics,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Local => "local",
            Origin::Remote => "remote",
            Origin::Analytics => "analytics",
        }
    }
}

/// One record's new state: `value: None` means deleted.
#[derive(Debug, Clone)]
pub struct Written {
    pub key: JsValue,
    pub value: Option<JsValue>,
}

#[derive(Debug, Default)]
pub struct Listeners {
    next_id: u32,
    changes: Vec<(u32, String, Function)>,
    status: Vec<(u32, Function)>,
}

impl Listeners {
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    pub fn on_change(&mut self, store: &str, callback: Function) -> u32 {
        let id = self.id();
        self.changes.push((id, store.to_owned(), callback));
        id
    }

    pub fn on_status(&mut self, callback: Function) -> u32 {
        let id = self.id();
        self.status.push((id, callback));
        id
    }

    pub fn remove(&mut self, id: u32) -> bool {
        let before = self.changes.len() + self.status.len();
        self.changes.retain(|(i, _, _)| *i != id);
        self.status.retain(|(i, _)| *i != id);
        before != self.changes.len() + self.status.len()
    }

    /// Listeners of a store, copied out so a callback may subscribe or unsubscribe while running.
    pub fn change_targets(&self, store: &str) -> Vec<Function> {
        self.changes.iter().filter(|(_, s, _)| s == store).map(|(_, _, f)| f.clone()).collect()
    }

    pub fn status_targets(&self) -> Vec<Function> {
        self.status.iter().map(|(_, f)| f.clone()).collect()
    }
}

pub fn change_event(store: &str, origin: Origin, written: &[Written]) -> JsValue {
    let event = Object::new();
    let changes: Array = written
        .iter()
        .map(|w| {
            let change = Object::new();
            let _ = Reflect::set(&change, &"key".into(), &w.key);
            let kind = if w.value.is_some() { "put" } else { "delete" };
            let _ = Reflect::set(&change, &"type".into(), &kind.into());
            if let Some(value) = &w.value {
                let _ = Reflect::set(&change, &"value".into(), value);
            }
            JsValue::from(change)
        })
        .collect();
    let _ = Reflect::set(&event, &"store".into(), &store.into());
    let _ = Reflect::set(&event, &"origin".into(), &origin.as_str().into());
    let _ = Reflect::set(&event, &"changes".into(), &changes);
    event.into()
}

pub fn call_all(targets: &[Function], event: &JsValue) {
    for target in targets {
        if let Err(e) = target.call1(&JsValue::NULL, event) {
            web_sys::console::error_2(&"tidepool: a listener threw".into(), &e);
        }
    }
}
