//! A BroadcastChannel: messages to the other tabs (and workers) of this origin that opened the
//! same channel name. Delivery is best effort, so nothing durable travels this way.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent};

#[derive(Debug)]
pub struct Channel {
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl Channel {
    /// Opens the channel `name`, calling `on_message` with the data of every message another
    /// instance posts. `None` where BroadcastChannel is missing: each tab then only learns of
    /// other tabs' writes through storage.
    pub fn open(name: &str, mut on_message: impl FnMut(JsValue) + 'static) -> Option<Channel> {
        let channel = BroadcastChannel::new(name).ok()?;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| on_message(event.data()));
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Some(Channel { channel, _on_message: on_message })
    }

    /// Posts `message` (structured-cloned); a value that cannot be cloned is reported and dropped.
    pub fn post(&self, message: &JsValue) {
        if let Err(e) = self.channel.post_message(message) {
            web_sys::console::warn_2(&"tidepool: could not tell other tabs".into(), &e);
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}
