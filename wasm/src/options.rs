//! The options of `Tidepool.open`, read from a JavaScript object and validated up front.

use js_sys::{Array, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use crate::error::Error;
use crate::idb::RESERVED_PREFIX;

/// What `Tidepool.open` was asked for.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The Tidepool database: part of every record's identity at the hub.
    pub name: String,
    /// The IndexedDB database holding it locally; defaults to `name`. Two local databases of
    /// the same Tidepool database behave as two devices (tests, multiple accounts).
    pub local_name: String,
    pub stores: Vec<StoreSpec>,
    /// WebSocket URL of the hub, e.g. `ws://localhost:8080/v1/sync`; `None` keeps the database local.
    pub hub: Option<String>,
    pub token: String,
    /// Whether to connect right away (`online: false` opens offline; `setOnline(true)` connects).
    pub online: bool,
}

/// An app object store and its indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSpec {
    pub name: String,
    pub indexes: Vec<IndexSpec>,
}

/// An index as IndexedDB's `createIndex` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    pub name: String,
    pub key_path: KeyPathSpec,
    pub unique: bool,
    pub multi_entry: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum KeyPathSpec {
    Single(String),
    Compound(Vec<String>),
}

impl KeyPathSpec {
    pub fn to_js(&self) -> JsValue {
        match self {
            KeyPathSpec::Single(s) => JsValue::from_str(s),
            KeyPathSpec::Compound(parts) => parts.iter().map(|p| JsValue::from_str(p)).collect::<Array>().into(),
        }
    }

    /// Reads the `keyPath` IndexedDB reports for an existing index.
    pub fn from_js(value: &JsValue) -> Option<KeyPathSpec> {
        if let Some(s) = value.as_string() {
            return Some(KeyPathSpec::Single(s));
        }
        let list = value.dyn_ref::<Array>()?;
        (0..list.length()).map(|i| list.get(i).as_string()).collect::<Option<Vec<_>>>().map(KeyPathSpec::Compound)
    }
}

fn field(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

fn string(object: &JsValue, name: &str, what: &str) -> Result<String, Error> {
    field(object, name).as_string().ok_or_else(|| Error::BadOptions(format!("{what} needs a string `{name}`")))
}

fn flag(object: &JsValue, name: &str) -> bool {
    field(object, name).as_bool().unwrap_or(false)
}

fn list(object: &JsValue, name: &str, what: &str) -> Result<Vec<JsValue>, Error> {
    let value = field(object, name);
    if value.is_undefined() {
        return Ok(vec![]);
    }
    let array = value.dyn_ref::<Array>().ok_or_else(|| Error::BadOptions(format!("{what}: `{name}` must be an array")))?;
    Ok(array.iter().collect())
}

impl OpenOptions {
    pub fn from_js(options: &JsValue) -> Result<OpenOptions, Error> {
        if !options.is_object() {
            return Err(Error::BadOptions("Tidepool.open takes an options object".into()));
        }
        let name = string(options, "name", "Tidepool.open")?;
        if name.is_empty() {
            return Err(Error::BadOptions("the database name must not be empty".into()));
        }
        let mut stores: Vec<StoreSpec> = Vec::new();
        for store in list(options, "stores", "Tidepool.open")? {
            let spec = StoreSpec::from_js(&store)?;
            if stores.iter().any(|s| s.name == spec.name) {
                return Err(Error::BadOptions(format!("store {:?} is declared twice", spec.name)));
            }
            stores.push(spec);
        }
        if stores.is_empty() {
            return Err(Error::BadOptions("declare at least one store in `stores`".into()));
        }
        let local_name = field(options, "localName").as_string().filter(|n| !n.is_empty()).unwrap_or_else(|| name.clone());
        let hub = field(options, "hub").as_string().filter(|h| !h.is_empty());
        let token = field(options, "token").as_string().unwrap_or_default();
        let online = field(options, "online").as_bool().unwrap_or(true);
        // `waitForLock` (a second tab waiting for the first to close) is still accepted and
        // means nothing now: every tab opens at once and shares the database (see `tabs`).
        Ok(OpenOptions { name, local_name, stores, hub, token, online })
    }
}

impl StoreSpec {
    fn from_js(value: &JsValue) -> Result<StoreSpec, Error> {
        let name = if let Some(name) = value.as_string() { name } else { string(value, "name", "a store")? };
        if name.is_empty() || name.starts_with(RESERVED_PREFIX) {
            return Err(Error::BadOptions(format!(
                "store name {name:?} is empty or uses the reserved prefix {RESERVED_PREFIX:?}"
            )));
        }
        let mut indexes: Vec<IndexSpec> = Vec::new();
        if !value.is_string() {
            for index in list(value, "indexes", &format!("store {name:?}"))? {
                let spec = IndexSpec::from_js(&index, &name)?;
                if indexes.iter().any(|i| i.name == spec.name) {
                    return Err(Error::BadOptions(format!("store {name:?} declares index {:?} twice", spec.name)));
                }
                indexes.push(spec);
            }
        }
        Ok(StoreSpec { name, indexes })
    }
}

impl IndexSpec {
    fn from_js(value: &JsValue, store: &str) -> Result<IndexSpec, Error> {
        let what = format!("an index of store {store:?}");
        let name = string(value, "name", &what)?;
        let key_path = KeyPathSpec::from_js(&field(value, "keyPath"))
            .ok_or_else(|| Error::BadOptions(format!("index {name:?} of store {store:?} needs a `keyPath` string or array of strings")))?;
        Ok(IndexSpec { name, key_path, unique: flag(value, "unique"), multi_entry: flag(value, "multiEntry") })
    }
}
