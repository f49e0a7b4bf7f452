//! Bookkeeping for the outbox rows: which entries of which row the hub has acknowledged.
//!
//! An outbox row holds every change of one local write; the engine knows each change by an
//! [`OutboxId`] made of the row's segment number and the entry's index in the row. A row is
//! deleted once all its entries are acknowledged; until then the acknowledged indexes are kept
//! in a small `_tp_acks` row, so a reopened database does not push them again.

use std::collections::{BTreeMap, BTreeSet};

use tidepool_core::sync::OutboxId;

/// Bits of an [`OutboxId`] that number the entry within its row.
const INDEX_BITS: u32 = 24;

/// Most entries one write may produce.
pub const MAX_ENTRIES: usize = 1 << INDEX_BITS;

pub fn outbox_id(segment: u64, idx: u32) -> OutboxId {
    (segment << INDEX_BITS) | u64::from(idx)
}

pub fn split(id: OutboxId) -> (u64, u32) {
    (id >> INDEX_BITS, (id & ((1 << INDEX_BITS) - 1)) as u32)
}

/// What to write after acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckWrite {
    /// Every entry of the row is acknowledged: delete the row and its acks.
    Delete(u64),
    /// Store these acknowledged indexes for the row.
    Acked(u64, Vec<u32>),
}

#[derive(Debug, Default)]
struct Row {
    waiting: BTreeSet<u32>,
    acked: BTreeSet<u32>,
}

#[derive(Debug, Default)]
pub struct OutboxRows {
    rows: BTreeMap<u64, Row>,
}

impl OutboxRows {
    /// Registers a row with the entries still waiting and those already acknowledged.
    pub fn add(&mut self, segment: u64, waiting: impl IntoIterator<Item = u32>, acked: impl IntoIterator<Item = u32>) {
        let row = self.rows.entry(segment).or_default();
        row.acked.extend(acked);
        row.waiting.extend(waiting.into_iter().filter(|i| !row.acked.contains(i)));
    }

    /// Whether the row of `segment` is known (waiting for acknowledgements).
    pub fn contains(&self, segment: u64) -> bool {
        self.rows.contains_key(&segment)
    }

    /// Keeps the rows still `stored`, moving the indexes `acked` names from waiting to
    /// acknowledged: the rows as another tab left them.
    pub fn reconcile(&mut self, stored: &BTreeSet<u64>, acked: &std::collections::HashMap<u64, BTreeSet<u32>>) {
        self.rows.retain(|seg, _| stored.contains(seg));
        for (seg, row) in &mut self.rows {
            for idx in acked.get(seg).into_iter().flatten() {
                if row.waiting.remove(idx) {
                    row.acked.insert(*idx);
                }
            }
        }
    }

    /// Entries not yet acknowledged, across all rows.
    pub fn waiting(&self) -> usize {
        self.rows.values().map(|r| r.waiting.len()).sum()
    }

    /// Applies acknowledgements; returns one write per affected row.
    pub fn ack(&mut self, ids: &[OutboxId]) -> Vec<AckWrite> {
        let mut touched = BTreeSet::new();
        for id in ids {
            let (segment, idx) = split(*id);
            if let Some(row) = self.rows.get_mut(&segment)
                && row.waiting.remove(&idx)
            {
                row.acked.insert(idx);
                touched.insert(segment);
            }
        }
        touched
            .into_iter()
            .filter_map(|segment| {
                let row = self.rows.get(&segment)?;
                if row.waiting.is_empty() {
                    self.rows.remove(&segment);
                    Some(AckWrite::Delete(segment))
                } else {
                    Some(AckWrite::Acked(segment, row.acked.iter().copied().collect()))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(split(outbox_id(12345, 77)), (12345, 77));
        assert_eq!(split(outbox_id(1, (MAX_ENTRIES - 1) as u32)), (1, (MAX_ENTRIES - 1) as u32));
    }

    #[test]
    fn a_row_goes_when_its_last_entry_is_acked() {
        let mut rows = OutboxRows::default();
        rows.add(5, [0, 1, 2], []);
        rows.add(6, [0], []);
        assert_eq!(rows.waiting(), 4);
        assert_eq!(rows.ack(&[outbox_id(5, 0), outbox_id(5, 2)]), vec![AckWrite::Acked(5, vec![0, 2])]);
        assert_eq!(rows.ack(&[outbox_id(5, 1), outbox_id(6, 0)]), vec![AckWrite::Delete(5), AckWrite::Delete(6)]);
        assert_eq!(rows.waiting(), 0);
        assert!(rows.ack(&[outbox_id(5, 1)]).is_empty(), "a repeated ack writes nothing");
    }

    #[test]
    fn reconciling_drops_deleted_rows_and_applies_stored_acks() {
        let mut rows = OutboxRows::default();
        rows.add(1, [0, 1], []);
        rows.add(2, [0, 1, 2], []);
        rows.add(3, [0], []);
        let stored = BTreeSet::from([2, 3]);
        let acked = std::collections::HashMap::from([(2, BTreeSet::from([0, 2]))]);
        rows.reconcile(&stored, &acked);
        assert!(!rows.contains(1) && rows.contains(2) && rows.contains(3));
        assert_eq!(rows.waiting(), 2);
        assert_eq!(rows.ack(&[outbox_id(2, 1)]), vec![AckWrite::Delete(2)]);
    }

    #[test]
    fn acks_found_at_open_are_not_waiting() {
        let mut rows = OutboxRows::default();
        rows.add(9, [0, 1, 2], [1]);
        assert_eq!(rows.waiting(), 2);
    }
}
