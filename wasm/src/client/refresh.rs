//! Catching up with other tabs: rereading the indexes when another tab wrote since this one last
//! looked.
//!
//! Every readwrite transaction on Tidepool's stores also writes `_tp_meta`'s generation (one
//! more than the last), under the database's cross-tab write lock. A tab about to write takes
//! that lock and compares the stored generation with the one it last wrote or read: equal means
//! its in-memory indexes (documents and segments, outbox rows, cursors) are storage's; different
//! means another tab wrote, and it rereads them. If no tab compacted since (a second counter,
//! bumped with snapshots replaced or segments deleted), other tabs only added segments: it reads
//! those registry rows and forgets the cached documents they hold. Otherwise it reads everything
//! again and forgets every cached document. Nothing here depends on a message between tabs.

use tidepool_core::StoreRef;

use crate::client::State;
use crate::client::open::{self, Indexes};
use crate::docs::cache::Cache;
use crate::error::Error;

/// Rereads the indexes if another tab wrote since (or always, with `force`); returns whether it
/// did. The leading tab keeps its engine (and connection) and hands it the outbox rows other tabs
/// added; another tab makes a new, empty engine (or, with `force`, as it is about to lead, one
/// holding the whole outbox).
pub async fn refresh(state: &mut State, leader: bool, force: bool) -> Result<bool, Error> {
    let (stored, compactions) = open::stored_generation(&state.db).await?;
    if stored == state.generation && !force {
        return Ok(false);
    }
    let base = (compactions == state.compactions && !force).then(|| (std::mem::take(&mut state.known), std::mem::take(&mut state.outbox)));
    let reused = base.is_some();
    let read = open::read_indexes(&state.db, &state.db_name, &state.stores, base).await;
    let Indexes { generation, compactions, added, known, outbox, pending, cursors, .. } = match read {
        Ok(indexes) => indexes,
        Err(e) => {
            // The indexes in memory may be gone (taken as the base): the next operation must
            // read everything.
            state.generation = u64::MAX;
            state.compactions = u64::MAX;
            return Err(e);
        }
    };
    if leader {
        // Only the leading tab acknowledges outbox entries, so the rows it knows are as stored;
        // rows it does not know were added by other tabs since (with a base, `pending` holds
        // only those).
        let added = if reused { pending } else { pending.into_iter().filter(|(seg, _, _)| !state.outbox.contains(*seg)).collect() };
        open::enqueue(&mut state.engine, &state.db_name, added);
        for (store, cursor) in &cursors {
            // A tab that quarantined a document dropped the store's cursor to fetch it all again.
            if cursor.is_none() && state.cursors.get(store).is_some_and(Option::is_some) {
                state.engine.subscribe(StoreRef::new(state.db_name.as_str(), store.as_str()), None);
            }
        }
    } else if force {
        // About to lead: the engine holds every unacknowledged entry of every tab.
        state.engine = open::engine(&state.config, &state.db_name, &state.stores, &cursors, pending);
    } else {
        // Another tab's engine never connects; made anew here so it does not grow with this
        // tab's writes. Its pending count is the outbox rows' (`OutboxRows::waiting`).
        state.engine = open::engine(&state.config, &state.db_name, &state.stores, &cursors, Vec::new());
    }
    state.outbox = outbox;
    state.known = known;
    state.cursors = cursors;
    match added {
        Some(docs) => state.evict(docs),
        None => state.cache = Cache::new(super::CACHE_CAPACITY),
    }
    state.generation = generation;
    state.compactions = compactions;
    Ok(true)
}
