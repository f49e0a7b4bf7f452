//! Paths into a record value, as JavaScript passes them: `"field"` or `["a", 0, "b"]`.

use tidepool_core::PathSegment;
use wasm_bindgen::{JsCast, JsValue};

use crate::error::Error;

pub fn from_js(value: &JsValue) -> Result<Vec<PathSegment>, Error> {
    if let Some(field) = value.as_string() {
        return Ok(vec![PathSegment::Field(field)]);
    }
    if !js_sys::Array::is_array(value) {
        return Err(Error::BadPath("a path is a field name or an array of field names and indexes".into()));
    }
    let array: &js_sys::Array = value.unchecked_ref();
    if array.length() == 0 {
        return Err(Error::BadPath("a path must not be empty".into()));
    }
    (0..array.length())
        .map(|i| {
            let seg = array.get(i);
            if let Some(field) = seg.as_string() {
                return Ok(PathSegment::Field(field));
            }
            match seg.as_f64() {
                Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= u32::MAX as f64 => Ok(PathSegment::Index(n as usize)),
                _ => Err(Error::BadPath(format!("segment {i} is neither a field name nor an array index"))),
            }
        })
        .collect()
}
