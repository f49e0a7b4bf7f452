//! Record values between JavaScript and core's [`Value`].
//!
//! JavaScript numbers become `Int` when they are safe integers (so counters and integer fields
//! keep integer semantics on every peer) and `Float` otherwise; `-0` stays a float because
//! JavaScript can tell it from `0`. Only what survives a round trip is accepted: functions,
//! symbols, `Map`/`Set`, class instances, typed arrays other than `Uint8Array`, and `undefined`
//! (which IndexedDB would silently drop from objects) are refused with `bad_value`.

use std::collections::BTreeMap;

use js_sys::{Array, ArrayBuffer, Date, Object, Reflect, Uint8Array};
use tidepool_core::Value;
use tidepool_core::value::MAX_VALUE_DEPTH;
use wasm_bindgen::{JsCast, JsValue};

use crate::error::Error;

/// Largest integer JavaScript numbers represent exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE: i64 = (1 << 53) - 1;

/// Converts a JavaScript value to a record value, or says where and why it cannot be stored.
pub fn from_js(value: &JsValue) -> Result<Value, Error> {
    let mut path = Vec::new();
    convert(value, 0, &mut path).map_err(|reason| at_path(&path, &reason))
}

/// A `bad_value` error naming where in the value (a dotted path) and why.
pub(crate) fn at_path(path: &[String], reason: &str) -> Error {
    let at = if path.is_empty() { "the value".to_owned() } else { format!("`{}`", path.join(".")) };
    Error::BadValue(format!("{at} {reason}"))
}

/// Whether `value` is a plain object (`{...}` or `Object.create(null)`), not an array, Date,
/// byte array or class instance.
pub(crate) fn is_plain_object(value: &JsValue) -> bool {
    if !value.is_object() || value.is_function() || Array::is_array(value) {
        return false;
    }
    let proto = Object::get_prototype_of(value);
    proto.is_null() || proto == Object::get_prototype_of(&Object::new())
}

/// Converts `value` found at `path`, `depth` levels into a record value.
pub(crate) fn convert(value: &JsValue, depth: usize, path: &mut Vec<String>) -> Result<Value, String> {
    if let Some(n) = value.as_f64() {
        return Ok(number(n));
    }
    if let Some(s) = value.as_string() {
        return Ok(Value::String(s));
    }
    if let Some(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if value.is_null() {
        return Ok(Value::Null);
    }
    if value.is_undefined() {
        return Err("is undefined, which IndexedDB cannot keep in a record (use null)".into());
    }
    if value.is_bigint() {
        let text = String::from(js_sys::BigInt::unchecked_from_js_ref(value).to_string(10).unwrap_or_default());
        return text.parse::<i64>().map(Value::Int).map_err(|_| "is a BigInt outside the 64-bit range".into());
    }
    if value.is_symbol() {
        return Err("is a symbol".into());
    }
    if value.is_function() {
        return Err("is a function".into());
    }
    if depth >= MAX_VALUE_DEPTH {
        return Err(format!("nests deeper than {MAX_VALUE_DEPTH} levels (or is circular)"));
    }
    if Array::is_array(value) {
        let array: &Array = value.unchecked_ref();
        let mut items = Vec::with_capacity(array.length() as usize);
        for i in 0..array.length() {
            path.push(i.to_string());
            items.push(convert(&array.get(i), depth + 1, path)?);
            path.pop();
        }
        return Ok(Value::Array(items));
    }
    if let Some(date) = value.dyn_ref::<Date>() {
        let ms = date.get_time();
        if ms.is_nan() {
            return Err("is an invalid Date".into());
        }
        return Ok(Value::Date(ms as i64));
    }
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Ok(Value::Bytes(bytes.to_vec()));
    }
    if value.is_instance_of::<ArrayBuffer>() {
        return Ok(Value::Bytes(Uint8Array::new(value).to_vec()));
    }
    let proto = Object::get_prototype_of(value);
    let plain = proto.is_null() || proto == Object::get_prototype_of(&Object::new());
    if !plain {
        let kind = Reflect::get(&proto, &"constructor".into())
            .ok()
            .and_then(|c| Reflect::get(&c, &"name".into()).ok())
            .and_then(|n| n.as_string())
            .unwrap_or_else(|| "an object".into());
        return Err(format!("is a {kind}; only plain objects, arrays, Dates and Uint8Arrays are stored"));
    }
    let object: &Object = value.unchecked_ref();
    let keys = Object::keys(object);
    let mut fields = BTreeMap::new();
    for i in 0..keys.length() {
        let key = keys.get(i);
        let name = key.as_string().unwrap_or_default();
        let field = Reflect::get(object, &key).map_err(|_| format!("has an unreadable field {name:?}"))?;
        path.push(name.clone());
        let v = convert(&field, depth + 1, path)?;
        path.pop();
        fields.insert(name, v);
    }
    Ok(Value::Object(fields))
}

fn number(n: f64) -> Value {
    let integral = n.fract() == 0.0 && n.abs() <= MAX_SAFE as f64;
    if integral && !(n == 0.0 && n.is_sign_negative()) { Value::Int(n as i64) } else { Value::Float(n) }
}

/// Converts a record value to plain JavaScript data: text becomes a string, a counter a number,
/// bytes a `Uint8Array`, integers beyond 2^53 a `BigInt` so no digit is lost.
pub fn to_js(value: &Value) -> JsValue {
    match value {
        Value::Null => JsValue::NULL,
        Value::Bool(b) => JsValue::from_bool(*b),
        Value::Int(n) | Value::Counter(n) => int_to_js(*n),
        Value::Float(f) => JsValue::from_f64(*f),
        Value::String(s) | Value::Text(s) => JsValue::from_str(s),
        Value::Date(ms) => Date::new(&JsValue::from_f64(*ms as f64)).into(),
        Value::Bytes(b) => Uint8Array::from(b.as_slice()).into(),
        Value::Array(items) => items.iter().map(to_js).collect::<Array>().into(),
        Value::Object(fields) => {
            let object = Object::new();
            for (k, v) in fields {
                set_field(&object, k, &to_js(v));
            }
            object.into()
        }
    }
}

fn int_to_js(n: i64) -> JsValue {
    if (-MAX_SAFE..=MAX_SAFE).contains(&n) { JsValue::from_f64(n as f64) } else { js_sys::BigInt::from(n).into() }
}

/// Sets an own data property. `__proto__` needs `defineProperty`: plain assignment would replace
/// the object's prototype instead of storing the field.
fn set_field(object: &Object, key: &str, value: &JsValue) {
    if key == "__proto__" {
        let descriptor = Object::new();
        for (k, v) in [("value", value.clone()), ("enumerable", true.into()), ("writable", true.into()), ("configurable", true.into())] {
            let _ = Reflect::set(&descriptor, &k.into(), &v);
        }
        Object::define_property(object, &key.into(), &descriptor);
    } else {
        // Setting a string-keyed property on a fresh plain object cannot throw.
        let _ = Reflect::set(object, &key.into(), value);
    }
}
