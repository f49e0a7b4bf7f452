// The page of the multi-tab test and benchmark (wasm/scripts/tabs-test.mjs, tabs-bench.mjs):
// opens the database named in the query (`?db=...&local=...`) against the hub that serves it, and
// gives them a few calls on `window.tp`. Several tabs load it with the same `local` to share one
// IndexedDB database; a tab with another `local` is another device.

import init, { Tidepool } from "./tidepool_wasm.js";

const params = new URLSearchParams(location.search);
const tp = { written: [], heard: new Set(), errors: [], bursting: false, latencies: { own: [], other: [], raw: [] }, ownKeys: new Set() };
window.tp = tp;

/** Milliseconds on a clock all tabs of the browser share. */
const stamp = () => performance.timeOrigin + performance.now();

// For the benchmark's baselines: a plain BroadcastChannel between the same tabs, and a plain Web
// Lock that the first tab holds until it closes (as Tidepool's leader lock is held).
const raw = new BroadcastChannel(`raw:${params.get("local")}`);
raw.onmessage = (event) => tp.latencies.raw.push(stamp() - event.data.t);
navigator.locks.request(`raw:${params.get("local")}`, () => {
  tp.rawLockAt = Date.now();
  return new Promise(() => {});
});

/** Writes `n` records one after another, each stamped, each followed by a plain message. */
tp.visibility = async (prefix, n) => {
  for (let i = 0; i < n; i++) {
    const key = `${prefix}-${i}`;
    tp.ownKeys.add(key);
    await tp.db.put("notes", key, { by: prefix, i, t: stamp() });
    raw.postMessage({ t: stamp() });
    // A pause like a user's, so each write is measured alone, not behind a queue of others.
    await new Promise((r) => setTimeout(r, 5));
  }
};

/** Writes `n` records `${prefix}-${i}` one after another, noting each once it resolved. */
tp.burst = async (prefix, n) => {
  tp.bursting = true;
  try {
    for (let i = 0; i < n; i++) {
      const key = `${prefix}-${i}`;
      await tp.db.put("notes", key, { by: prefix, i });
      tp.written.push(key);
    }
  } catch (error) {
    tp.errors.push(`${error.code ?? error.name}: ${error.message}`);
  } finally {
    tp.bursting = false;
  }
};

/** The keys of `expected` this tab's database lacks or holds with another value. */
tp.missing = async (expected) => {
  const values = await tp.db.getAll("notes");
  const keys = await tp.db.getAllKeys("notes");
  const held = new Map(keys.map((k, i) => [k, values[i]]));
  return expected.filter((key) => {
    const value = held.get(key);
    const [prefix, i] = [key.slice(0, key.lastIndexOf("-")), Number(key.slice(key.lastIndexOf("-") + 1))];
    return !value || value.by !== prefix || value.i !== i;
  });
};

/** Rows in the outbox of this tab's IndexedDB database, read directly. */
tp.outboxRows = () => new Promise((resolve, reject) => {
  const request = indexedDB.open(params.get("local"));
  request.onerror = () => reject(request.error);
  request.onsuccess = () => {
    const db = request.result;
    const count = db.transaction("_tp_outbox").objectStore("_tp_outbox").count();
    count.onsuccess = () => { db.close(); resolve(count.result); };
    count.onerror = () => { db.close(); reject(count.error); };
  };
});

async function main() {
  await init();
  tp.db = await Tidepool.open({
    name: params.get("db"),
    localName: params.get("local"),
    stores: ["notes"],
    hub: `ws://${location.host}/v1/sync`,
  });
  tp.db.subscribe("notes", (event) => {
    const now = stamp();
    for (const change of event.changes) {
      tp.heard.add(change.key);
      if (change.value && typeof change.value.t === "number") {
        (tp.ownKeys.has(change.key) ? tp.latencies.own : tp.latencies.other).push(now - change.value.t);
      }
    }
  });
  tp.db.onStatus((status) => {
    if (status.leader && tp.ledAt === undefined) tp.ledAt = Date.now();
    if (status.leader && status.connection === "online" && tp.onlineAt === undefined) tp.onlineAt = Date.now();
  });
  document.body.dataset.ready = "1";
}

main().catch((error) => {
  document.body.dataset.error = `${error.code ?? error.name}: ${error.message}`;
});
