//! Browser globals that exist in windows and workers alike: timers, randomness, the clock.
//!
//! Bound as globals rather than through `window` so the client also runs in a Web Worker.

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &js_sys::Function, ms: f64) -> JsValue;

    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buffer: &js_sys::Uint8Array) -> Result<JsValue, JsValue>;
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        set_timeout(&resolve, f64::from(ms));
    });
    // A promise that only ever resolves cannot reject.
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Sixteen bytes from the platform's cryptographic generator: actor and peer ids must never
/// collide between databases, and `Math.random` gives no such guarantee.
pub fn random_id() -> Result<[u8; 16], crate::error::Error> {
    let buffer = js_sys::Uint8Array::new_with_length(16);
    get_random_values(&buffer).map_err(|e| crate::error::Error::Internal(format!("crypto.getRandomValues failed: {e:?}")))?;
    let mut id = [0u8; 16];
    buffer.copy_to(&mut id);
    Ok(id)
}

/// Whole seconds since the Unix epoch: the timestamp Automerge records on local changes.
pub fn now_seconds() -> i64 {
    (js_sys::Date::now() / 1000.0).floor() as i64
}

/// Milliseconds since the Unix epoch, for diagnostics.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}
