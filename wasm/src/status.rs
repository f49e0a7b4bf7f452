//! `status()`: connection state, unsynced changes, and the last error, as JavaScript sees it.

use js_sys::{Object, Reflect};
use wasm_bindgen::JsValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// No hub, offline by request, or waiting to reconnect.
    Offline,
    Connecting,
    Online,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub connection: Connection,
    /// Local changes the hub has not acknowledged.
    pub pending: usize,
    /// Online, caught up with every store, and nothing pending.
    pub synced: bool,
    pub error: Option<(String, String)>,
}

impl Default for Status {
    fn default() -> Self {
        Status { connection: Connection::Offline, pending: 0, synced: false, error: None }
    }
}

impl Status {
    pub fn to_js(&self) -> JsValue {
        let status = Object::new();
        let connection = match self.connection {
            Connection::Offline => "offline",
            Connection::Connecting => "connecting",
            Connection::Online => "online",
        };
        let _ = Reflect::set(&status, &"connection".into(), &connection.into());
        let _ = Reflect::set(&status, &"online".into(), &(self.connection == Connection::Online).into());
        let _ = Reflect::set(&status, &"pending".into(), &(self.pending as f64).into());
        let _ = Reflect::set(&status, &"synced".into(), &self.synced.into());
        if let Some((code, message)) = &self.error {
            let error = Object::new();
            let _ = Reflect::set(&error, &"code".into(), &code.into());
            let _ = Reflect::set(&error, &"message".into(), &message.into());
            let _ = Reflect::set(&status, &"error".into(), &error);
        }
        status.into()
    }
}
