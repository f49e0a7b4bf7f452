//! IndexedDB keys between JavaScript and core's [`Key`].
//!
//! The accepted keys are IndexedDB's: numbers (not NaN), valid Dates, strings, binary (an
//! `ArrayBuffer` or any view on one) and arrays of keys. Binary keys come back as `ArrayBuffer`,
//! as IndexedDB itself returns them.

use js_sys::{Array, ArrayBuffer, Date, Uint8Array};
use tidepool_core::Key;
use tidepool_core::key::MAX_KEY_DEPTH;
use wasm_bindgen::{JsCast, JsValue};

use crate::error::Error;

pub fn from_js(value: &JsValue) -> Result<Key, Error> {
    let key = convert(value, 0).map_err(|why| Error::BadKey(why.to_owned()))?;
    key.validate()?;
    Ok(key)
}

fn convert(value: &JsValue, depth: usize) -> Result<Key, &'static str> {
    if let Some(n) = value.as_f64() {
        return if n.is_nan() { Err("NaN is not a key") } else { Ok(Key::Number(n)) };
    }
    if let Some(s) = value.as_string() {
        return Ok(Key::String(s));
    }
    if let Some(date) = value.dyn_ref::<Date>() {
        let ms = date.get_time();
        return if ms.is_nan() { Err("an invalid Date is not a key") } else { Ok(Key::Date(ms)) };
    }
    if value.is_instance_of::<ArrayBuffer>() {
        return Ok(Key::Binary(Uint8Array::new(value).to_vec()));
    }
    if ArrayBuffer::is_view(value) {
        let view: &js_sys::Object = value.unchecked_ref();
        let field = |name: &str| js_sys::Reflect::get(view, &name.into()).ok().and_then(|v| v.as_f64());
        let (Some(buffer), Some(offset), Some(len)) = (
            js_sys::Reflect::get(view, &"buffer".into()).ok(),
            field("byteOffset"),
            field("byteLength"),
        ) else {
            return Err("an unreadable binary view is not a key");
        };
        let bytes = Uint8Array::new_with_byte_offset_and_length(&buffer, offset as u32, len as u32);
        return Ok(Key::Binary(bytes.to_vec()));
    }
    if Array::is_array(value) {
        if depth >= MAX_KEY_DEPTH {
            return Err("key arrays nest too deep (or are circular)");
        }
        let array: &Array = value.unchecked_ref();
        return (0..array.length()).map(|i| convert(&array.get(i), depth + 1)).collect::<Result<_, _>>().map(Key::Array);
    }
    Err("a key must be a number, Date, string, binary data or an array of keys")
}

pub fn to_js(key: &Key) -> JsValue {
    match key {
        Key::Number(n) => JsValue::from_f64(*n),
        Key::Date(ms) => Date::new(&JsValue::from_f64(*ms)).into(),
        Key::String(s) => JsValue::from_str(s),
        Key::Binary(b) => Uint8Array::from(b.as_slice()).buffer().into(),
        Key::Array(items) => items.iter().map(to_js).collect::<Array>().into(),
    }
}

/// The JavaScript key of a canonical key encoding (from storage or the wire, already validated).
pub fn encoded_to_js(encoded: &[u8]) -> Result<JsValue, Error> {
    Ok(to_js(&Key::decode(encoded)?))
}
