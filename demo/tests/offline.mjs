// The demo app opens offline: headless Chromium (through chromedriver's WebDriver HTTP API) loads
// the app from a real hub, the hub is killed, the page is reloaded and must come from the service
// worker with its local tasks; a task added then syncs once the hub is back (same port, same
// data), and a second user's page gets it from the hub. The offline choice survives a reload too,
// and a second tab of the same user opens at once, shares the database with the first (its tasks
// and the offline choice) and keeps syncing when the first closes.
//
// Usage: node demo/tests/offline.mjs HUB_BINARY DEMO_SITE [CHROMEDRIVER]   (make test-demo-offline)

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Browser, freePort, start, stop, runMain } from "../../wasm/scripts/browser.mjs";

const [hubBinary, site, chromedriverBinary = "/usr/bin/chromedriver"] = process.argv.slice(2);
if (!hubBinary || !site) {
  console.error("usage: node offline.mjs HUB_BINARY DEMO_SITE [CHROMEDRIVER]");
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), "tidepool-demo-offline-"));

function startHub(port) {
  return start("hub", hubBinary, ["serve", "--listen", `127.0.0.1:${port}`, "--data", join(work, "hub"), "--insecure-dev", "--static-dir", site], /listening on /);
}

/** Adds a task through the form, as a user would. */
function addTask(browser, title, project, hours) {
  return browser.run(`
      const form = document.querySelector("#new-task");
      form.title.value = arguments[0];
      form.project.value = arguments[1];
      form.hours.value = String(arguments[2]);
      document.querySelector("#add").click();`, title, project, hours);
}

const task = (title) => `#tasks li[data-title="${title}"]`;

async function main() {
  const [hubPort, driverPort] = [await freePort(), await freePort()];
  let hub = await startHub(hubPort);
  await start("chromedriver", chromedriverBinary, [`--port=${driverPort}`], /started successfully/);
  const browser = new Browser(`http://127.0.0.1:${driverPort}`);
  await browser.open();
  try {
    const app = `http://127.0.0.1:${hubPort}/?user=alice`;
    await browser.go(`${app}#token=dev`);
    await browser.waitFor('body[data-ready="true"]');
    await browser.waitFor('#status[data-connection="online"]');
    // The service worker has cached the shell once it is active.
    const active = await browser.runAsync(`
      const done = arguments[arguments.length - 1];
      navigator.serviceWorker.ready.then(() => caches.keys()).then((keys) => done(keys.length > 0), (e) => done(String(e)));`);
    if (active !== true) throw new Error(`the service worker is not ready: ${active}`);
    await addTask(browser, "Buy milk", "home", 1);
    await browser.waitFor(task("Buy milk"));
    await browser.waitFor('#status[data-pending="0"][data-synced="true"]', "the task synced");

    // A second tab of the same user opens at once and shares the database: a task added there
    // shows in the first tab, and the second keeps syncing once the first (the leader) closes.
    const firstTab = await browser.tab();
    const secondTab = await browser.newTab();
    await browser.go(app);
    await browser.waitFor('body[data-ready="true"]', "the second tab opening");
    await browser.waitFor(task("Buy milk"));
    await browser.waitFor('#status[data-connection="online"]', "the second tab showing the connection");
    await addTask(browser, "From the second tab", "home", 3);
    await browser.waitFor(task("From the second tab"));
    await browser.switchTo(firstTab);
    await browser.waitFor(task("From the second tab"), "the first tab showing the second tab's task");
    // Going offline in one tab takes every tab offline, and each says it was the user's choice.
    await browser.switchTo(secondTab);
    await browser.run('document.querySelector("#toggle-online").click()');
    await browser.switchTo(firstTab);
    await browser.waitFor('#status[data-connection="offline"][data-choice="offline"]', "the first tab offline by the choice made in the second");
    await browser.run('document.querySelector("#toggle-online").click()');
    await browser.switchTo(secondTab);
    await browser.waitFor('#status[data-connection="online"][data-choice="online"]', "the second tab online by the choice made in the first");
    await browser.switchTo(firstTab);
    await browser.closeTab();
    await browser.switchTo(secondTab);
    await browser.waitFor('#status[data-connection="online"][data-pending="0"][data-synced="true"]', "the second tab synced after the first closed");

    // The hub goes away (and with it the web server): the page must still open.
    await stop(hub, "SIGKILL");
    await browser.waitFor('#status[data-connection="offline"][data-choice="online"]', "the pill showing the hub unreachable");
    await browser.go(app);
    await browser.waitFor('body[data-ready="true"]', "the app loaded offline");
    await browser.waitFor(task("Buy milk"), "the local task after an offline reload");
    const pill = await browser.run('return document.querySelector("#status").textContent');
    if (!pill.includes("hub unreachable")) throw new Error(`the pill should say the hub is unreachable: ${pill}`);
    await addTask(browser, "Write offline", "home", 2);
    await browser.waitFor(task("Write offline"));
    await browser.waitFor('#status[data-pending="1"]', "one change waiting");

    // Back: the edit made offline reaches the hub, and a second user's page gets both tasks.
    hub = await startHub(hubPort);
    await browser.waitFor('#status[data-connection="online"][data-pending="0"][data-synced="true"]', "the offline edit synced");
    await browser.go(`http://127.0.0.1:${hubPort}/?user=bob`);
    await browser.waitFor('body[data-ready="true"]');
    await browser.waitFor(task("Buy milk"), "bob's page getting the first task from the hub");
    await browser.waitFor(task("Write offline"), "bob's page getting the offline task from the hub");

    // Offline by choice is kept across a reload, and the pill and the button agree.
    await browser.run('document.querySelector("#toggle-online").click()');
    await browser.waitFor('#status[data-connection="offline"][data-choice="offline"]');
    await browser.go(`http://127.0.0.1:${hubPort}/?user=bob`);
    await browser.waitFor('body[data-ready="true"]');
    await browser.waitFor('#status[data-connection="offline"][data-choice="offline"]', "the offline choice after a reload");
    const [text, button] = await browser.run('return [document.querySelector("#status").textContent, document.querySelector("#toggle-online").textContent]');
    if (!text.startsWith("offline (your choice)") || button !== "Go online") throw new Error(`pill "${text}" and button "${button}" disagree`);
    console.log("demo offline: the app shell loads offline, offline edits sync, the offline choice survives a reload");
  } finally {
    await browser.close();
  }
}

await runMain(main, work);
