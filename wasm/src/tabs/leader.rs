//! Leadership: taking the leader lock (at open, or when the leading tab goes), what the leader
//! does for the others, and how every tab handles messages.

use std::rc::Rc;

use js_sys::Reflect;
use wasm_bindgen::JsValue;

use crate::client::refresh;
use crate::client::shared::Shared;
use crate::error::Error;
use crate::js::channel::Channel;
use crate::js::lock::{self, Lock};
use crate::js::global;
use crate::sync::driver;
use crate::tabs::message::Message;
use crate::tabs::{channel_name, leader_lock_name};

/// How often the leader looks for other tabs' writes without being told.
const PICKUP_EVERY_MS: u32 = 1_000;

/// Joins the database's tabs: listens on the channel, then leads if no other tab does, or
/// follows and waits to lead.
pub async fn join(shared: &Rc<Shared>) {
    let weak = Rc::downgrade(shared);
    let channel = Channel::open(&channel_name(&shared.tabs.local_name), move |data| {
        if let Some(shared) = weak.upgrade() {
            on_message(&shared, &data);
        }
    });
    *shared.tabs.channel.borrow_mut() = channel;
    match lock::acquire(&leader_lock_name(&shared.tabs.local_name), false, None).await {
        Ok(lock) => lead(shared, lock),
        Err(Error::InUse(_)) => {
            shared.tabs.met_peer();
            // The leader answers with its status, and from then on tells this tab of its writes.
            shared.tabs.post(&Message::Ask);
            wasm_bindgen_futures::spawn_local(follow(shared.clone()));
        }
        Err(e) => {
            // Without Web Locks the tabs cannot agree on a leader; each then syncs on its own.
            web_sys::console::warn_1(&format!("tidepool: no leader election ({e}); this tab syncs by itself").into());
            lead(shared, None);
        }
    }
}

/// Waits for the leader lock, then rereads everything from storage and leads.
async fn follow(shared: Rc<Shared>) {
    // `close` aborts the wait, so a closed tab neither stays queued nor is kept in memory.
    let abort = web_sys::AbortController::new().ok();
    *shared.tabs.abort_wait.borrow_mut() = abort.clone();
    let lock = match lock::acquire(&leader_lock_name(&shared.tabs.local_name), true, abort.as_ref().map(|a| a.signal()).as_ref()).await {
        Ok(lock) => lock,
        Err(e) => {
            if !shared.link.borrow().closed {
                web_sys::console::error_1(&format!("tidepool: waiting to lead failed: {e}").into());
            }
            return;
        }
    };
    if shared.link.borrow().closed {
        // Closed while waiting: dropping the lock passes the lead on.
        return;
    }
    {
        let mut guard = match shared.exclusive().await {
            Ok(guard) => guard,
            Err(e) => {
                web_sys::console::error_1(&format!("tidepool: could not take the lead: {e}").into());
                return;
            }
        };
        let Some(state) = guard.as_mut() else { return };
        // The engine, made from storage, holds every unacknowledged change of every tab.
        if let Err(e) = refresh::refresh(state, false, true).await {
            web_sys::console::error_1(&format!("tidepool: could not take the lead: {e}").into());
            return;
        }
        shared.tabs.observe(state.generation, state.outbox.waiting());
    }
    lead(&shared, lock);
    wasm_bindgen_futures::spawn_local(pickup(shared));
}

fn lead(shared: &Rc<Shared>, lock: Option<Lock>) {
    shared.tabs.set_leader(true);
    *shared.tabs.leader_lock.borrow_mut() = lock;
    if let Some(url) = shared.tabs.hub.clone() {
        driver::start(shared.clone(), url);
    }
    wasm_bindgen_futures::spawn_local(every_second(shared.clone()));
}

async fn every_second(shared: Rc<Shared>) {
    loop {
        global::sleep(PICKUP_EVERY_MS).await;
        if shared.link.borrow().closed {
            return;
        }
        pickup(shared.clone()).await;
        shared.tabs.announce(&shared.status(), true);
    }
}

/// The leader catches up with storage: takes the outbox rows other tabs wrote, sends them,
/// compacts if segments piled up, and tells the others its status.
async fn pickup(shared: Rc<Shared>) {
    shared.tabs.pickup_scheduled.set(false);
    let mut guard = match shared.exclusive().await {
        Ok(guard) => guard,
        Err(e) => {
            web_sys::console::warn_1(&format!("tidepool: could not read other tabs' writes: {e}").into());
            return;
        }
    };
    let Some(state) = guard.as_mut() else { return };
    shared.flush(state).await;
    shared.compact_a_little(state).await;
}

fn on_message(shared: &Rc<Shared>, data: &JsValue) {
    let Some(message) = Message::from_js(data) else { return };
    shared.tabs.met_peer();
    let leader = shared.tabs.is_leader();
    match message {
        Message::Changes(event) => {
            if let Some(store) = Reflect::get(&event, &"store".into()).ok().and_then(|s| s.as_string()) {
                shared.emit_event(&store, &event);
            }
            if leader && !shared.tabs.pickup_scheduled.replace(true) {
                wasm_bindgen_futures::spawn_local(pickup(shared.clone()));
            }
        }
        Message::Status(status, generation) if !leader => {
            shared.tabs.hear(status, generation);
            shared.refresh_status(None);
        }
        Message::Status(..) => {}
        Message::Ask if leader => shared.tabs.announce(&shared.status(), true),
        Message::Ask => {}
        Message::Online(online) => {
            let mut link = shared.link.borrow_mut();
            link.want_online = online;
            link.wake();
        }
    }
}
