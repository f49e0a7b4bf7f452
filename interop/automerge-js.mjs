// Automerge JS's side of the interop test (hub/tests/automerge_js.rs): reads Tidepool documents
// and writes documents and changes made with @automerge/automerge, as an app using Automerge JS
// directly would.
//
//   node automerge-js.mjs inspect FILE            the document's `v`, `live`, root keys and heads
//   node automerge-js.mjs change BASE OUT         one A.change on BASE; OUT = A.getLastLocalChange
//   node automerge-js.mjs incremental BASE OUT    three changes on BASE; OUT = one A.saveIncremental
//   node automerge-js.mjs save BASE OUT           changes on BASE; OUT = A.save of the whole document
//   node automerge-js.mjs scratch DIR             a document made from scratch (not from Tidepool's
//                                                 genesis change): DIR/scratch.automerge (A.save),
//                                                 DIR/scratch-N.change (every change, in order)
//
// Every command prints one JSON object on stdout: the resulting document as `inspect` describes
// it, plus `changes` (how many changes the written bytes hold) where that is a question.
//
// Values are described with their Automerge datatype made explicit, since JSON cannot tell an
// integer from a float, and a JavaScript number cannot hold every 64-bit integer:
//
//   null, true, false          as themselves
//   {"int": "-12"}             64-bit integer, in decimal (exact beyond 2^53)
//   {"uint": "12"}             unsigned integer (Tidepool never writes one)
//   {"f64": "400a000000000000"} float, its IEEE 754 bits in hex (exact for NaN and -0)
//   {"str": "..."}             plain string (ImmutableString in JS)
//   {"text": "..."}            collaborative text (a JS string)
//   {"counter": "5"}           counter (A.Counter)
//   {"timestamp": "1700000000123"}  Date, in milliseconds
//   {"bytes": "00ff"}          Uint8Array, in hex
//   {"list": [...]}, {"map": {...}}
//
// Each value is read twice: through the document proxy an app sees, and through the backend's
// getWithType, which names the datatype. The two must agree or the command fails.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as A from "@automerge/automerge";

function fail(message) {
  throw new Error(message);
}

function hex(bytes) {
  return Buffer.from(bytes).toString("hex");
}

function floatBits(f) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, f);
  return hex(new Uint8Array(view.buffer));
}

function sameNumber(view, value) {
  return (typeof view === "number" || typeof view === "bigint") && BigInt(view) === BigInt(value);
}

/// The value at `prop` of object `obj`, described; `view` is the same value read through the proxy.
function typed(backend, obj, prop, view, path) {
  const got = backend.getWithType(obj, prop);
  if (got === null || got === undefined) fail(`${path}: missing`);
  const [type, value] = got;
  const check = (ok, what) => {
    if (!ok) fail(`${path}: the proxy reads ${String(view)} (${view?.constructor?.name}) for ${type} ${what}`);
  };
  switch (type) {
    case "null":
      check(view === null, "null");
      return null;
    case "boolean":
      check(view === value, String(value));
      return value;
    case "int":
    case "uint":
      check(sameNumber(view, value), String(value));
      return { [type]: String(value) };
    case "f64":
      check(typeof view === "number" && Object.is(view, value), String(value));
      return { f64: floatBits(value) };
    case "str":
      check(A.isImmutableString(view) && view.toString() === value, JSON.stringify(value));
      return { str: value };
    case "text": {
      const text = backend.text(value);
      check(typeof view === "string" && view === text, JSON.stringify(text));
      return { text };
    }
    case "counter":
      check(view instanceof A.Counter && sameNumber(view.value, value), String(value));
      return { counter: String(value) };
    case "timestamp":
      check(view instanceof Date && view.getTime() === value.getTime(), String(value.getTime()));
      return { timestamp: String(value.getTime()) };
    case "bytes":
      check(view instanceof Uint8Array && hex(view) === hex(value), hex(value));
      return { bytes: hex(value) };
    case "list": {
      const length = backend.length(value);
      check(Array.isArray(view) && view.length === length, `of length ${length}`);
      const items = [];
      for (let i = 0; i < length; i++) items.push(typed(backend, value, i, view[i], `${path}[${i}]`));
      return { list: items };
    }
    case "map": {
      const keys = backend.keys(value);
      check(view !== null && typeof view === "object" && !Array.isArray(view), "map");
      const viewKeys = Object.keys(view).sort();
      check(JSON.stringify(viewKeys) === JSON.stringify([...keys].sort()), `with keys ${keys}`);
      const fields = {};
      for (const key of keys) fields[key] = typed(backend, value, key, view[key], `${path}.${key}`);
      return { map: fields };
    }
    default:
      fail(`${path}: datatype ${type} is not one Tidepool writes`);
  }
}

function describe(doc) {
  const backend = A.getBackend(doc);
  const root = backend.keys("_root");
  const at = (key) => (root.includes(key) ? typed(backend, "_root", key, doc[key], key) : undefined);
  return { heads: A.getHeads(doc), root, v: at("v"), live: at("live") };
}

function load(path) {
  return A.load(new Uint8Array(readFileSync(path)));
}

/// Changes made after `heads`, and whether `bytes` are exactly those changes one after another.
function changesSince(doc, heads, bytes) {
  const changes = A.getChangesSince(doc, heads);
  const total = changes.reduce((n, c) => n + c.length, 0);
  if (total !== bytes.length) fail(`${bytes.length} bytes written for ${changes.length} changes of ${total} bytes`);
  return changes;
}

function print(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
}

const commands = {
  inspect(file) {
    print(describe(load(file)));
  },

  change(base, out) {
    let doc = load(base);
    doc = A.change(doc, "one change from Automerge JS", (d) => {
      d.v.int = 43;
      d.v.from_js = new A.ImmutableString("single");
      d.v.visits.increment(5);
      A.splice(d, ["v", "notes"], 0, 0, "JS ");
    });
    const change = A.getLastLocalChange(doc) ?? fail("A.change made no change");
    writeFileSync(out, change);
    print({ ...describe(doc), changes: 1 });
  },

  incremental(base, out) {
    let doc = load(base);
    const heads = A.getHeads(doc);
    // After a load, saveIncremental starts with the whole document; only what follows counts.
    A.saveIncremental(doc);
    doc = A.change(doc, (d) => {
      d.v.inc_float = 2.5;
      d.v.inc_whole_float = new A.Float64(3);
    });
    doc = A.change(doc, (d) => {
      d.v.inc_date = new Date(-1234);
      d.v.inc_bytes = new Uint8Array([9, 8, 0]);
      d.v.inc_big = 9007199254740993n;
      delete d.v.no;
    });
    doc = A.change(doc, (d) => {
      d.v.array.push(new A.ImmutableString("pushed"));
      d.v.nested.a.b.inc = new A.ImmutableString("str");
      d.v.inc_text = "collaborative";
      d.v.visits.increment(10);
      A.splice(d, ["v", "notes"], d.v.notes.length, 0, " (inc)");
    });
    const blob = A.saveIncremental(doc);
    const changes = changesSince(doc, heads, blob);
    if (changes.length < 2) fail(`saveIncremental holds ${changes.length} change(s)`);
    writeFileSync(out, blob);
    print({ ...describe(doc), changes: changes.length });
  },

  save(base, out) {
    let doc = load(base);
    doc = A.change(doc, (d) => {
      d.v.saved = { by: new A.ImmutableString("A.save"), at: new Date(1700000000999) };
      // Assigned on its own: inside an object literal, Automerge JS 3.5.0 stores A.Int, A.Uint
      // and A.Float64 as maps ({value: ...}), not as numbers.
      d.v.saved.n = new A.Int(-5);
    });
    doc = A.change(doc, (d) => {
      d.v.nested.list.push(1.5, null, true);
      delete d.v.empty;
    });
    writeFileSync(out, A.save(doc));
    print(describe(doc));
  },

  scratch(dir) {
    // What an app would do without Tidepool: its own root `v` map, not the genesis change's.
    let doc = A.from({
      v: { title: new A.ImmutableString("from scratch"), n: 1 },
      live: 1,
      prov: {},
    });
    doc = A.change(doc, (d) => {
      d.v.n = 2;
    });
    doc = A.change(doc, (d) => {
      d.v.extra = new A.ImmutableString("more");
    });
    writeFileSync(join(dir, "scratch.automerge"), A.save(doc));
    const changes = A.getAllChanges(doc);
    changes.forEach((c, i) => writeFileSync(join(dir, `scratch-${i}.change`), c));
    print({ ...describe(doc), changes: changes.length });
  },
};

const [command, ...args] = process.argv.slice(2);
const run = commands[command];
if (!run || args.length !== run.length) {
  process.stderr.write(`usage: node automerge-js.mjs ${Object.keys(commands).join("|")} ARGS (see the header)\n`);
  process.exit(2);
}
run(...args);
