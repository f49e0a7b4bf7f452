//! One WebSocket to the hub, reporting what happens to it as [`Input`]s on a channel.
//!
//! Every socket carries a generation number so events from a socket that was already replaced
//! (a late `close`, a frame in flight) are recognised and ignored.

use futures_channel::mpsc::UnboundedSender;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::error::Error;

/// Something for the sync loop to act on.
#[derive(Debug)]
pub enum Input {
    Opened(u64),
    Frame(u64, Vec<u8>),
    Closed(u64, u16, String),
    /// The app asked to go on- or offline, or to close: re-read the link's wishes.
    Wake,
}

#[derive(Debug)]
pub struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    pub fn connect(url: &str, generation: u64, inbox: UnboundedSender<Input>) -> Result<Socket, Error> {
        let ws = WebSocket::new(url).map_err(|e| Error::BadOptions(format!("hub URL {url:?}: {e:?}")))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let tx = inbox.clone();
        let on_open = Closure::<dyn FnMut()>::new(move || {
            let _ = tx.unbounded_send(Input::Opened(generation));
        });
        let tx = inbox.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            // The protocol is binary; a text frame is not Tidepool's and is dropped.
            if let Ok(buffer) = event.data().dyn_into::<js_sys::ArrayBuffer>() {
                let _ = tx.unbounded_send(Input::Frame(generation, js_sys::Uint8Array::new(&buffer).to_vec()));
            }
        });
        let tx = inbox;
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let _ = tx.unbounded_send(Input::Closed(generation, event.code(), event.reason()));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close })
    }

    /// Sends a frame; false if the socket is not open (the engine resends after reconnecting).
    pub fn send(&self, frame: &[u8]) -> bool {
        self.ws.ready_state() == WebSocket::OPEN && self.ws.send_with_u8_array(frame).is_ok()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}
