//! Hub: the sync server (filled by the hub work).
