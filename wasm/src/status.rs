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
    /// This tab holds the connection for every tab of the database (see `tabs`).
    pub leader: bool,
}

impl Default for Status {
    fn default() -> Self {
        Status { connection: Connection::Offline, pending: 0, synced: false, error: None, leader: false }
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
        let _ = Reflect::set(&status, &"leader".into(), &self.leader.into());
        if let Some((code, message)) = &self.error {
            let error = Object::new();
            let _ = Reflect::set(&error, &"code".into(), &code.into());
            let _ = Reflect::set(&error, &"message".into(), &message.into());
            let _ = Reflect::set(&status, &"error".into(), &error);
        }
        status.into()
    }

    /// Reads what [`Self::to_js`] wrote (another tab's status, from a message).
    pub fn from_js(value: &JsValue) -> Option<Status> {
        let get = |k: &str| Reflect::get(value, &k.into()).ok();
        let connection = match get("connection")?.as_string()?.as_str() {
            "online" => Connection::Online,
            "connecting" => Connection::Connecting,
            _ => Connection::Offline,
        };
        let error = get("error").filter(|e| e.is_object()).and_then(|e| {
            let code = Reflect::get(&e, &"code".into()).ok()?.as_string()?;
            let message = Reflect::get(&e, &"message".into()).ok()?.as_string().unwrap_or_default();
            Some((code, message))
        });
        Some(Status {
            connection,
            pending: get("pending")?.as_f64()? as usize,
            synced: get("synced")?.as_bool()?,
            error,
            leader: get("leader")?.as_bool()?,
        })
    }
}
