//! Transactions: building them and committing with the cause of a failure, not just "aborted".

use indexed_db_futures::database::Database;
use indexed_db_futures::internals::SystemRepr;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::{Transaction, TransactionMode};
use wasm_bindgen::JsCast;

use crate::error::{Error, from_dom};

pub fn read<'a>(db: &'a Database, stores: &[&str]) -> Result<Transaction<'a>, Error> {
    Ok(db.transaction(stores.to_vec()).with_mode(TransactionMode::Readonly).build()?)
}

pub fn write<'a>(db: &'a Database, stores: &[&str]) -> Result<Transaction<'a>, Error> {
    Ok(db.transaction(stores.to_vec()).with_mode(TransactionMode::Readwrite).build()?)
}

/// Commits and waits until the data is durable. When a request inside failed (a unique index, the
/// quota), IndexedDB aborts the whole transaction; the error returned is that request's error,
/// which says more than the abort.
pub async fn commit(tx: Transaction<'_>) -> Result<(), Error> {
    let sys: web_sys::IdbTransaction = tx.as_sys().clone().unchecked_into();
    match tx.commit().await {
        Ok(()) => Ok(()),
        Err(e) => Err(match sys.error() {
            Some(cause) => from_dom(cause.as_ref()),
            None => e.into(),
        }),
    }
}
