//! The sync loop: one task per database that keeps a WebSocket to the hub while the app wants to
//! be online, feeds every frame to the engine, and reconnects with backoff when the socket drops.
//!
//! The engine is sans-IO; this loop is the IO. On open it tells the engine it is connected and
//! sends what the engine queued (hello, subscriptions from the persisted cursors, the outbox);
//! on each frame it runs the frame through the client (which persists before anything is
//! reported); on close it tells the engine, which forgets what was in flight and pushes it again
//! on the next connection.

use std::pin::pin;
use std::rc::Rc;

use futures_channel::mpsc::{self, UnboundedReceiver};
use futures_util::StreamExt;
use futures_util::future::{Either, select};

use crate::client::shared::{Delivery, Shared};
use crate::client::remote;
use crate::js::global;
use crate::sync::backoff::Backoff;
use crate::sync::socket::{Input, Socket};

/// Segments beyond which a frame or a write also compacts a little.
pub const COMPACT_ABOVE: usize = 256;
/// Documents one opportunistic compaction step may snapshot.
pub const COMPACT_STEP: usize = 512;

pub fn start(shared: Rc<Shared>, url: String) {
    let (tx, rx) = mpsc::unbounded();
    shared.link.borrow_mut().wake = Some(tx);
    wasm_bindgen_futures::spawn_local(run(shared, url, rx));
}

async fn run(shared: Rc<Shared>, url: String, mut inbox: UnboundedReceiver<Input>) {
    let mut backoff = Backoff::new(250, 30_000);
    let mut generation = 0u64;
    loop {
        if shared.link.borrow().closed {
            break;
        }
        if !shared.link.borrow().should_connect() {
            if inbox.next().await.is_none() {
                break;
            }
            continue;
        }
        generation += 1;
        let Some(tx) = shared.link.borrow().wake.clone() else { break };
        match Socket::connect(&url, generation, tx) {
            Ok(socket) => {
                let mut link = shared.link.borrow_mut();
                link.socket = Some(socket);
                link.open = false;
            }
            Err(e) => {
                shared.link.borrow_mut().error = Some((e.code().into(), e.to_string()));
                shared.refresh_status(None);
                wait_or_wake(&mut inbox, backoff.next_delay(js_sys::Math::random())).await;
                continue;
            }
        }
        shared.refresh_status(None);
        connection(&shared, generation, &mut inbox, &mut backoff).await;
        {
            let mut link = shared.link.borrow_mut();
            link.socket = None;
            link.open = false;
        }
        {
            let mut guard = shared.lock().await;
            match guard.as_mut() {
                Some(state) => {
                    state.engine.disconnected();
                    shared.refresh_status(Some(state));
                }
                None => shared.refresh_status(None),
            }
        }
        if shared.link.borrow().should_connect() {
            wait_or_wake(&mut inbox, backoff.next_delay(js_sys::Math::random())).await;
        }
    }
}

/// Runs one connection until it closes or the app no longer wants it.
async fn connection(shared: &Shared, generation: u64, inbox: &mut UnboundedReceiver<Input>, backoff: &mut Backoff) {
    while let Some(input) = inbox.next().await {
        match input {
            Input::Opened(g) if g == generation => {
                {
                    let mut link = shared.link.borrow_mut();
                    link.open = true;
                    if !link.auth_rejected {
                        link.error = None;
                    }
                }
                let mut guard = match shared.exclusive().await {
                    Ok(guard) => guard,
                    Err(e) => {
                        shared.link.borrow_mut().error = Some((e.code().into(), e.to_string()));
                        return;
                    }
                };
                let Some(state) = guard.as_mut() else { return };
                state.engine.connected();
                shared.flush(state).await;
            }
            Input::Frame(g, frame) if g == generation => match handle_frame(shared, &frame).await {
                Delivery::Healthy => backoff.reset(),
                Delivery::HubComplained => {}
                Delivery::Disconnect => return,
            },
            Input::Closed(g, code, reason) if g == generation => {
                if code != 1000 && !reason.is_empty() {
                    shared.link.borrow_mut().error.get_or_insert_with(|| ("disconnected".into(), reason));
                }
                return;
            }
            Input::Wake if !shared.link.borrow().should_connect() => return,
            _ => {}
        }
    }
}

async fn handle_frame(shared: &Shared, frame: &[u8]) -> Delivery {
    let mut guard = match shared.exclusive().await {
        Ok(guard) => guard,
        Err(e) => {
            web_sys::console::error_1(&format!("tidepool: could not read storage before a frame: {e}").into());
            if let Some(state) = shared.lock().await.as_mut() {
                state.engine.disconnected();
            }
            shared.link.borrow_mut().error = Some((e.code().into(), e.to_string()));
            return Delivery::Disconnect;
        }
    };
    let Some(state) = guard.as_mut() else { return Delivery::Disconnect };
    match remote::receive(state, frame).await {
        Ok(received) => {
            let outcome = shared.deliver(state, &received);
            shared.compact_a_little(state).await;
            outcome
        }
        Err(e) => {
            web_sys::console::error_1(&format!("tidepool: could not store a frame from the hub: {e}").into());
            // The engine believes it applied what storage does not have: start the connection
            // over from the cursors that were persisted.
            state.engine.disconnected();
            let stores: Vec<_> = state.cursors.iter().map(|(s, c)| (state.store_ref(s), *c)).collect();
            for (store, cursor) in stores {
                state.engine.subscribe(store, cursor);
            }
            shared.link.borrow_mut().error = Some((e.code().into(), e.to_string()));
            shared.refresh_status(Some(state));
            Delivery::Disconnect
        }
    }
}

/// Sleeps `ms`, or less if the app wakes the loop (to go online now, offline, or close).
async fn wait_or_wake(inbox: &mut UnboundedReceiver<Input>, ms: u32) {
    let deadline = global::now_ms() + f64::from(ms);
    loop {
        let remaining = deadline - global::now_ms();
        if remaining <= 0.0 {
            return;
        }
        let sleep = pin!(global::sleep(remaining as u32));
        match select(sleep, inbox.next()).await {
            Either::Left(_) | Either::Right((None | Some(Input::Wake), _)) => return,
            // Late events of a socket already gone.
            Either::Right((Some(_), _)) => {}
        }
    }
}
