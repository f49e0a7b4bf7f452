//! The connection as the rest of the client sees it: what the app wants (online or not), what the
//! socket is doing, and the last problem the hub reported.

use futures_channel::mpsc::UnboundedSender;

use crate::sync::socket::{Input, Socket};

#[derive(Debug, Default)]
pub struct Link {
    pub socket: Option<Socket>,
    /// The socket finished its handshake.
    pub open: bool,
    pub want_online: bool,
    /// The hub refused the token: reconnecting would only be refused again.
    pub auth_rejected: bool,
    pub closed: bool,
    /// The last problem worth showing in `status()`: (code, message).
    pub error: Option<(String, String)>,
    /// Wakes the sync loop; `None` when no hub is configured.
    pub wake: Option<UnboundedSender<Input>>,
}

impl Link {
    pub fn should_connect(&self) -> bool {
        self.want_online && !self.auth_rejected && !self.closed && self.wake.is_some()
    }

    pub fn send(&self, frames: &[Vec<u8>]) {
        if let (true, Some(socket)) = (self.open, &self.socket) {
            for frame in frames {
                socket.send(frame);
            }
        }
    }

    pub fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.unbounded_send(Input::Wake);
        }
    }
}
