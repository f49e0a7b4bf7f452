// Builds the npm package from the ES module wasm-bindgen wrote (wasm/pkg): the module, its
// TypeScript types, the wasm file, a package.json with `exports` and the package README, packed
// by `npm pack`. Prints the tarball's path.
//
// Usage: node wasm/scripts/npm-pack.mjs PKG_DIR OUT_DIR VERSION

import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const [pkg, out, version] = process.argv.slice(2);
if (!pkg || !out || !version) {
  console.error("usage: node npm-pack.mjs PKG_DIR OUT_DIR VERSION");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const files = ["tidepool_wasm.js", "tidepool_wasm.d.ts", "tidepool_wasm_bg.wasm"];
for (const file of files) {
  if (!existsSync(join(pkg, file))) {
    console.error(`${join(pkg, file)} is missing: build it with \`make wasm-pkg\``);
    process.exit(1);
  }
}

const staging = resolve(out, "package");
rmSync(staging, { recursive: true, force: true });
mkdirSync(staging, { recursive: true });
for (const file of files) copyFileSync(join(pkg, file), join(staging, file));
copyFileSync(join(here, "..", "npm", "README.md"), join(staging, "README.md"));

const manifest = {
  name: "@tidepool/browser",
  version,
  description: "Offline-first IndexedDB records that sync through a Tidepool hub (Automerge CRDTs, WebAssembly).",
  license: "MIT OR Apache-2.0",
  repository: { type: "git", url: "https://github.com/tidepool-sync/tidepool" },
  type: "module",
  main: "./tidepool_wasm.js",
  types: "./tidepool_wasm.d.ts",
  exports: {
    ".": { types: "./tidepool_wasm.d.ts", default: "./tidepool_wasm.js" },
    // For bundlers that hand out asset URLs (esbuild's file loader, Vite's `?url`): pass the URL
    // to `init`. Bundlers that understand `new URL(..., import.meta.url)` need nothing.
    "./tidepool_wasm_bg.wasm": "./tidepool_wasm_bg.wasm",
    "./package.json": "./package.json",
  },
  files: [...files, "README.md"],
  // Importing the module only defines it: the wasm loads when `init` is called.
  sideEffects: false,
  keywords: ["indexeddb", "offline-first", "crdt", "automerge", "sync", "webassembly"],
};
writeFileSync(join(staging, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);

const packed = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", resolve(out)], { cwd: staging, encoding: "utf8" }));
console.log(resolve(out, packed[0].filename));
