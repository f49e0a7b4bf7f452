//! Opening a database and bringing its object stores and indexes in line with the declaration.
//!
//! The IndexedDB version is an implementation detail: Tidepool compares what exists with what
//! `Tidepool.open` declared and, only when they differ, reopens one version higher to create
//! missing stores and indexes and to replace indexes whose definition changed. App stores are
//! never deleted (their data is the user's); undeclared indexes are, since they derive from data.

use std::cell::RefCell;
use std::rc::Rc;

use indexed_db_futures::database::Database;
use indexed_db_futures::internals::SystemRepr;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbDatabase, IdbObjectStore, IdbOpenDbRequest, IdbTransaction};

use crate::error::{Error, from_dom};
use crate::idb::{INTERNAL, QUARANTINE, tx};
use crate::options::{IndexSpec, KeyPathSpec, StoreSpec};

/// One change to the schema.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    CreateStore { name: String, auto_increment: bool },
    CreateIndex { store: String, index: IndexSpec },
    DeleteIndex { store: String, name: String },
}

/// Opens `name` with every internal store and every declared app store and index in place.
pub async fn open(name: &str, stores: &[StoreSpec]) -> Result<Database, Error> {
    let db = Database::open(name).await?;
    let steps = plan(&db, stores).await?;
    if steps.is_empty() {
        return Ok(db);
    }
    let next = db.version() as u32 + 1;
    db.close();
    upgrade(name, next, steps).await?;
    Ok(Database::open(name).await?)
}

async fn plan(db: &Database, stores: &[StoreSpec]) -> Result<Vec<Step>, Error> {
    let existing: Vec<String> = db.object_store_names().collect();
    let mut steps = Vec::new();
    for internal in INTERNAL {
        if !existing.iter().any(|e| e == internal) {
            steps.push(Step::CreateStore { name: internal.into(), auto_increment: internal == QUARANTINE });
        }
    }
    let mut present: Vec<&StoreSpec> = Vec::new();
    for spec in stores {
        if existing.contains(&spec.name) {
            present.push(spec);
        } else {
            steps.push(Step::CreateStore { name: spec.name.clone(), auto_increment: false });
            for index in &spec.indexes {
                steps.push(Step::CreateIndex { store: spec.name.clone(), index: index.clone() });
            }
        }
    }
    if present.is_empty() {
        return Ok(steps);
    }
    let names: Vec<&str> = present.iter().map(|s| s.name.as_str()).collect();
    let tx = tx::read(db, &names)?;
    for spec in present {
        let store: IdbObjectStore = tx.object_store(&spec.name)?.as_sys().clone().unchecked_into();
        steps.extend(index_steps(&store, spec).map_err(|e| from_dom(&e))?);
    }
    Ok(steps)
}

fn index_steps(store: &IdbObjectStore, spec: &StoreSpec) -> Result<Vec<Step>, JsValue> {
    let mut steps = Vec::new();
    let names = store.index_names();
    let existing: Vec<String> = (0..names.length()).filter_map(|i| names.item(i)).collect();
    for name in &existing {
        let wanted = spec.indexes.iter().find(|i| &i.name == name);
        let index = store.index(name)?;
        let current = IndexSpec {
            name: name.clone(),
            key_path: KeyPathSpec::from_js(&index.key_path()?).unwrap_or(KeyPathSpec::Single(String::new())),
            unique: index.unique(),
            multi_entry: index.multi_entry(),
        };
        if wanted != Some(&current) {
            steps.push(Step::DeleteIndex { store: spec.name.clone(), name: name.clone() });
        }
    }
    for index in &spec.indexes {
        let same = steps.iter().all(|s| !matches!(s, Step::DeleteIndex { name, .. } if *name == index.name));
        if !existing.contains(&index.name) || !same {
            steps.push(Step::CreateIndex { store: spec.name.clone(), index: index.clone() });
        }
    }
    Ok(steps)
}

/// Runs the steps in a version-change transaction. This goes below indexed_db_futures because
/// changing an existing store's indexes needs the version-change transaction itself, which that
/// crate's upgrade callback does not expose.
async fn upgrade(name: &str, version: u32, steps: Vec<Step>) -> Result<(), Error> {
    let factory = indexed_db_futures::factory::DBFactory::new()?;
    let factory: &web_sys::IdbFactory = factory.as_sys().unchecked_ref();
    let request = factory.open_with_u32(name, version).map_err(|e| from_dom(&e))?;
    let failure: Rc<RefCell<Option<JsValue>>> = Rc::default();
    let seen = failure.clone();
    let on_upgrade = Closure::once(move |event: web_sys::Event| {
        let Some(request) = event.target().and_then(|t| t.dyn_into::<IdbOpenDbRequest>().ok()) else { return };
        let (Ok(db), Some(tx)) = (request.result(), request.transaction()) else { return };
        if let Err(e) = apply(&db.unchecked_into(), &tx, &steps) {
            *seen.borrow_mut() = Some(e);
            let _ = tx.abort();
        }
    });
    request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let result = await_request(&request).await;
    request.set_onupgradeneeded(None);
    drop(on_upgrade);
    if let Some(e) = failure.borrow_mut().take() {
        return Err(Error::BadOptions(format!("the declared schema cannot be created: {}", from_dom(&e))));
    }
    let db: IdbDatabase = result.map_err(|e| from_dom(&e))?.unchecked_into();
    db.close();
    Ok(())
}

fn apply(db: &IdbDatabase, tx: &IdbTransaction, steps: &[Step]) -> Result<(), JsValue> {
    for step in steps {
        match step {
            Step::CreateStore { name, auto_increment } => {
                let params = web_sys::IdbObjectStoreParameters::new();
                params.set_auto_increment(*auto_increment);
                db.create_object_store_with_optional_parameters(name, &params)?;
            }
            Step::DeleteIndex { store, name } => tx.object_store(store)?.delete_index(name)?,
            Step::CreateIndex { store, index } => {
                let params = web_sys::IdbIndexParameters::new();
                params.set_unique(index.unique);
                params.set_multi_entry(index.multi_entry);
                tx.object_store(store)?.create_index_with_str_sequence_and_optional_parameters(
                    &index.name,
                    &index.key_path.to_js(),
                    &params,
                )?;
            }
        }
    }
    Ok(())
}

/// Waits for an open request's success or error. A `blocked` open (another tab holds an older
/// version) simply keeps waiting: that tab's connection closes itself on `versionchange`.
async fn await_request(request: &IdbOpenDbRequest) -> Result<JsValue, JsValue> {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        let target = request.clone();
        let ok = Closure::once_into_js(move |_: web_sys::Event| {
            let _ = resolve.call1(&JsValue::NULL, &target.result().unwrap_or(JsValue::NULL));
        });
        let target = request.clone();
        let failed = Closure::once_into_js(move |_: web_sys::Event| {
            let error = target.error().ok().flatten().map(JsValue::from).unwrap_or(JsValue::NULL);
            let _ = reject.call1(&JsValue::NULL, &error);
        });
        request.set_onsuccess(Some(ok.unchecked_ref()));
        request.set_onerror(Some(failed.unchecked_ref()));
    });
    wasm_bindgen_futures::JsFuture::from(promise).await
}
