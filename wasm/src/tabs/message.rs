//! What the tabs of one database tell each other on their BroadcastChannel.

use js_sys::{Object, Reflect};
use wasm_bindgen::JsValue;

use crate::status::Status;

#[derive(Debug, Clone)]
pub enum Message {
    /// A change event (as `subscribe` listeners get it) of a write that is already stored.
    Changes(JsValue),
    /// The leader's status, and the generation it had seen.
    Status(Status, u64),
    /// A new tab asks the leader for its status.
    Ask,
    /// `setOnline` was called in some tab.
    Online(bool),
}

fn set(object: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(object, &key.into(), value);
}

impl Message {
    pub fn to_js(&self) -> JsValue {
        let object = Object::new();
        let kind = match self {
            Message::Changes(event) => {
                set(&object, "event", event);
                "changes"
            }
            Message::Status(status, generation) => {
                set(&object, "status", &status.to_js());
                set(&object, "generation", &JsValue::from_f64(*generation as f64));
                "status"
            }
            Message::Ask => "ask",
            Message::Online(online) => {
                set(&object, "online", &JsValue::from_bool(*online));
                "online"
            }
        };
        set(&object, "tidepool", &kind.into());
        object.into()
    }

    /// `None` for anything else (a message of another version, or not Tidepool's).
    pub fn from_js(value: &JsValue) -> Option<Message> {
        let get = |k: &str| Reflect::get(value, &k.into()).ok();
        Some(match get("tidepool")?.as_string()?.as_str() {
            "changes" => Message::Changes(get("event").filter(JsValue::is_object)?),
            "status" => Message::Status(Status::from_js(&get("status")?)?, get("generation")?.as_f64()? as u64),
            "ask" => Message::Ask,
            "online" => Message::Online(get("online")?.as_bool()?),
            _ => return None,
        })
    }
}
