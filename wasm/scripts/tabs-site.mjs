// The tabs test page (wasm/tests/tabs/) with the ES module, served by a hub without tokens, and a
// browser session: what the tabs test and the tabs benchmark both start from.

import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { Browser, freePort, start } from "./browser.mjs";

const here = dirname(fileURLToPath(import.meta.url));

/** Builds the site under `work`, starts the hub and chromedriver; the hub's URL and an open browser. */
export async function openTabsSite(work, moduleDir, hubBinary, chromedriverBinary) {
  const site = join(work, "site");
  mkdirSync(site);
  for (const file of ["tidepool_wasm.js", "tidepool_wasm_bg.wasm"]) copyFileSync(join(moduleDir, file), join(site, file));
  for (const file of ["index.html", "app.js"]) copyFileSync(join(here, "..", "tests", "tabs", file), join(site, file));
  const [hubPort, driverPort] = [await freePort(), await freePort()];
  await start("hub", hubBinary, ["serve", "--listen", `127.0.0.1:${hubPort}`, "--data", join(work, "hub"), "--insecure-dev", "--static-dir", site], /listening on /);
  await start("chromedriver", chromedriverBinary, [`--port=${driverPort}`], /started successfully/);
  const browser = new Browser(`http://127.0.0.1:${driverPort}`);
  await browser.open();
  return { hubUrl: `http://127.0.0.1:${hubPort}`, browser };
}
