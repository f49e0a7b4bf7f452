// The npm package as a web developer uses it: the packed tarball installed into a tiny app with
// esbuild from npm, bundled, served by a real hub, and run in headless Chromium (chromedriver's
// WebDriver HTTP API): one page opens a database, puts and updates a record; a second page (its
// own IndexedDB database) gets the result through the hub.
//
// Usage: node wasm/scripts/npm-test.mjs TARBALL HUB_BINARY [CHROMEDRIVER]   (make test-npm)

import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { Browser, WAIT_MS, freePort, start, runMain } from "./browser.mjs";

const ESBUILD_VERSION = "0.28.2";
const [tarball, hubBinary, chromedriverBinary = "/usr/bin/chromedriver"] = process.argv.slice(2);
if (!tarball || !hubBinary) {
  console.error("usage: node npm-test.mjs TARBALL HUB_BINARY [CHROMEDRIVER]");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const work = mkdtempSync(join(tmpdir(), "tidepool-npm-test-"));

/** JSON with object keys sorted, so two records compare by content. */
function canonical(value) {
  return JSON.stringify(value, (_, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v));
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

/** Waits until the page has a result (or an error) and returns the parsed record. */
async function result(browser, what) {
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    const [value, error] = await browser.run("return [document.body.dataset.result, document.body.dataset.error]");
    if (error) throw new Error(`${what}: ${error}`);
    if (value) return JSON.parse(value);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: no result after ${WAIT_MS} ms`);
}

async function main() {
  // The app: the package from the tarball and esbuild, as `npm install` gets them.
  const app = join(work, "app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({
    name: "tidepool-npm-test-app",
    private: true,
    type: "module",
    dependencies: { "@tidepool/browser": `file:${resolve(tarball)}`, esbuild: ESBUILD_VERSION },
  }));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: app, stdio: "inherit" });
  const installed = join(app, "node_modules", "@tidepool", "browser");
  const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"));
  expect(manifest.exports["."].types === "./tidepool_wasm.d.ts", "package.json exports no types");
  const types = readFileSync(join(installed, manifest.types), "utf8");
  for (const api of ["static open(options: OpenOptions): Promise<Tidepool>", "update(store: string", "export type TidepoolChanges"]) {
    expect(types.includes(api), `the installed types lack: ${api}`);
  }

  copyFileSync(join(here, "..", "tests", "npm", "app.js"), join(app, "app.js"));
  const site = join(app, "site");
  execFileSync(join(app, "node_modules", ".bin", "esbuild"), ["app.js", "--bundle", "--format=esm", "--loader:.wasm=file", `--outdir=${site}`, "--log-level=warning"], { cwd: app, stdio: "inherit" });
  copyFileSync(join(here, "..", "tests", "npm", "index.html"), join(site, "index.html"));

  const [hubPort, driverPort] = [await freePort(), await freePort()];
  await start("hub", hubBinary, ["serve", "--listen", `127.0.0.1:${hubPort}`, "--data", join(work, "hub"), "--insecure-dev", "--static-dir", site], /listening on /);
  await start("chromedriver", chromedriverBinary, [`--port=${driverPort}`], /started successfully/);
  const browser = new Browser(`http://127.0.0.1:${driverPort}`);
  await browser.open();
  try {
    const db = `npm-${Date.now()}`;
    const expected = { title: "milk", done: true, by: { who: "npm" } };
    await browser.go(`http://127.0.0.1:${hubPort}/?role=writer&db=${db}`);
    const written = await result(browser, "the writer page");
    expect(canonical(written) === canonical(expected), `the writer holds ${JSON.stringify(written)}`);
    await browser.newTab();
    await browser.go(`http://127.0.0.1:${hubPort}/?role=reader&db=${db}`);
    const read = await result(browser, "the reader page");
    expect(canonical(read) === canonical(expected), `the reader got ${JSON.stringify(read)}`);
    console.log(`npm package: installed, bundled by esbuild ${ESBUILD_VERSION}, put + update synced to a second page`);
  } finally {
    await browser.close();
  }
}

await runMain(main, work);
