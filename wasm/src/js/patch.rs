//! The changes `update` takes, as JavaScript passes them: a plain object of fields. A nested plain
//! object changes the fields it names inside that field's object (the rest stay); `undefined`
//! removes a field; anything else (arrays, Dates, bytes, scalars, `null`) is the field's new value.

use js_sys::{Object, Reflect};
use tidepool_core::value::MAX_VALUE_DEPTH;
use tidepool_core::{FieldUpdate, Patch};
use wasm_bindgen::{JsCast, JsValue};

use crate::error::Error;
use crate::js::value::{at_path, convert as convert_value, is_plain_object};

/// Converts `update`'s changes, or says where and why they cannot be applied.
pub fn from_js(changes: &JsValue) -> Result<Patch, Error> {
    if !is_plain_object(changes) {
        return Err(Error::BadValue("update takes a plain object of the fields to change, e.g. { done: true }".into()));
    }
    let mut path = Vec::new();
    convert(changes, 0, &mut path).map_err(|reason| at_path(&path, &reason))
}

fn convert(changes: &JsValue, depth: usize, path: &mut Vec<String>) -> Result<Patch, String> {
    if depth >= MAX_VALUE_DEPTH {
        return Err(format!("nests deeper than {MAX_VALUE_DEPTH} levels (or is circular)"));
    }
    let object: &Object = changes.unchecked_ref();
    let keys = Object::keys(object);
    let mut patch = Patch::new();
    for i in 0..keys.length() {
        let key = keys.get(i);
        let name = key.as_string().unwrap_or_default();
        let field = Reflect::get(object, &key).map_err(|_| format!("has an unreadable field {name:?}"))?;
        path.push(name.clone());
        let update = if field.is_undefined() {
            FieldUpdate::Remove
        } else if is_plain_object(&field) {
            FieldUpdate::Patch(convert(&field, depth + 1, path)?)
        } else {
            FieldUpdate::Set(convert_value(&field, depth + 1, path)?)
        };
        path.pop();
        patch.insert(name, update);
    }
    Ok(patch)
}
