//! TypeScript declarations for the option, event and status objects the API passes around.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** An IndexedDB key. Binary keys are returned as ArrayBuffer. */
export type TidepoolKey = number | string | Date | ArrayBuffer | ArrayBufferView | TidepoolKey[];

/** A field name, or a path of field names and array indexes. */
export type TidepoolPath = string | (string | number)[];

/**
 * The fields `update` changes. A nested plain object changes only the fields it names inside
 * that field's object; `undefined` removes a field; any other value (arrays, Dates, bytes,
 * scalars, null) is the field's new value. Example: `{ done: true, note: undefined, meta: { by: "ann" } }`.
 */
export type TidepoolChanges = { [field: string]: unknown };

export interface IndexSpec {
  name: string;
  keyPath: string | string[];
  unique?: boolean;
  multiEntry?: boolean;
}

export interface StoreSpec {
  name: string;
  indexes?: IndexSpec[];
}

export interface OpenOptions {
  /** The IndexedDB database name; also the database part of every record's identity. */
  name: string;
  /** The IndexedDB database name (default: name). Two local databases of one Tidepool database act as two devices. */
  localName?: string;
  stores: (StoreSpec | string)[];
  /** WebSocket URL of the hub, e.g. "ws://localhost:8080/v1/sync". Without it the data stays local. */
  hub?: string;
  /** Token sent to the hub in the first frame (browsers cannot set WebSocket headers). */
  token?: string;
  /** Connect right away (default true). */
  online?: boolean;
  /**
   * Accepted for compatibility and ignored: every tab of a database opens at once and shares it
   * (one of them holds the hub connection; another takes over when it closes or crashes).
   */
  waitForLock?: boolean;
}

export interface Change {
  key: TidepoolKey;
  type: "put" | "delete";
  /** The new plain value; absent for deletes. */
  value?: unknown;
}

export interface ChangeEvent {
  store: string;
  /** local: this client (any tab of it); remote: another client via the hub; analytics: a bridge write-back. */
  origin: "local" | "remote" | "analytics";
  changes: Change[];
}

export interface Status {
  connection: "offline" | "connecting" | "online";
  online: boolean;
  /** Local changes (of every tab) the hub has not acknowledged yet. */
  pending: number;
  /** Online, caught up with the hub, nothing pending. */
  synced: boolean;
  error?: { code: string; message: string };
  /** This tab holds the hub connection for every tab of the database; the others report its status. */
  leader: boolean;
}

export type TidepoolErrorCode =
  | "bad_options" | "bad_value" | "bad_key" | "bad_path" | "bad_range"
  | "unknown_store" | "unknown_index" | "not_found" | "wrong_type" | "out_of_range"
  | "constraint" | "quota_exceeded" | "corrupt_document" | "auth_rejected" | "no_hub"
  | "closed" | "in_use" | "timeout" | "storage" | "internal";

/** Every rejection and throw from Tidepool is an Error named "TidepoolError" with a code. */
export interface TidepoolError extends Error {
  name: "TidepoolError";
  code: TidepoolErrorCode;
}
"#;
