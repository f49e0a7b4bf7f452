// The demo app opens offline: headless Chromium (through chromedriver's WebDriver HTTP API) loads
// the app from a real hub, the hub is killed, the page is reloaded and must come from the service
// worker with its local tasks; a task added then syncs once the hub is back (same port, same
// data), and a second user's page gets it from the hub. The offline choice survives a reload too.
//
// Usage: node demo/tests/offline.mjs HUB_BINARY DEMO_SITE [CHROMEDRIVER]   (make test-demo-offline)

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [hubBinary, site, chromedriverBinary = "/usr/bin/chromedriver"] = process.argv.slice(2);
if (!hubBinary || !site) {
  console.error("usage: node offline.mjs HUB_BINARY DEMO_SITE [CHROMEDRIVER]");
  process.exit(2);
}
const WAIT_MS = 30_000;
const work = mkdtempSync(join(tmpdir(), "tidepool-demo-offline-"));
const children = new Set();

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts a process and resolves once a line of its output matches `ready`. */
function start(name, command, args, ready) {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${output}`)), WAIT_MS);
    const look = (chunk) => {
      output += chunk;
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.on("data", look);
    child.stderr.on("data", look);
    child.once("exit", (code) => {
      children.delete(child);
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before it was ready:\n${output}`));
    });
  });
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

function startHub(port) {
  return start("hub", hubBinary, ["serve", "--listen", `127.0.0.1:${port}`, "--data", join(work, "hub"), "--insecure-dev", "--static-dir", site], /listening on /);
}

class Browser {
  constructor(base) {
    this.base = base;
  }

  async call(method, path, body) {
    const response = await fetch(`${this.base}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(`WebDriver ${method} ${path}: ${JSON.stringify(data.value)}`);
    return data.value;
  }

  async open() {
    const args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"];
    const session = await this.call("POST", "/session", {
      capabilities: { alwaysMatch: { browserName: "chrome", "goog:chromeOptions": { binary: "/usr/bin/chromium", args } } },
    });
    this.session = `/session/${session.sessionId}`;
  }

  go(url) {
    return this.call("POST", `${this.session}/url`, { url });
  }

  run(script, ...args) {
    return this.call("POST", `${this.session}/execute/sync`, { script, args });
  }

  runAsync(script, ...args) {
    return this.call("POST", `${this.session}/execute/async`, { script, args });
  }

  /** Waits until `selector` matches, event-driven by polling the page, or fails saying what it saw. */
  async waitFor(selector, what = selector) {
    const deadline = Date.now() + WAIT_MS;
    while (Date.now() < deadline) {
      let found = false;
      try {
        found = await this.run("return document.querySelector(arguments[0]) !== null", selector);
      } catch {
        // The page is navigating; ask again.
      }
      if (found) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}; the page shows:\n${await this.describe()}`);
  }

  async describe() {
    try {
      return await this.run("return ['#status', '#toggle-online', '#problem', '#tasks'].map((s) => { const n = document.querySelector(s); return n ? n.outerHTML : s + ' missing'; }).join('\\n')");
    } catch (e) {
      return String(e);
    }
  }

  /** Adds a task through the form, as a user would. */
  addTask(title, project, hours) {
    return this.run(`
      const form = document.querySelector("#new-task");
      form.title.value = arguments[0];
      form.project.value = arguments[1];
      form.hours.value = String(arguments[2]);
      document.querySelector("#add").click();`, title, project, hours);
  }

  close() {
    return this.session ? this.call("DELETE", this.session).catch(() => {}) : Promise.resolve();
  }
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
    await browser.addTask("Buy milk", "home", 1);
    await browser.waitFor(task("Buy milk"));
    await browser.waitFor('#status[data-pending="0"][data-synced="true"]', "the task synced");

    // The hub goes away (and with it the web server): the page must still open.
    await stop(hub);
    await browser.waitFor('#status[data-connection="offline"][data-choice="online"]', "the pill showing the hub unreachable");
    await browser.go(app);
    await browser.waitFor('body[data-ready="true"]', "the app loaded offline");
    await browser.waitFor(task("Buy milk"), "the local task after an offline reload");
    const pill = await browser.run('return document.querySelector("#status").textContent');
    if (!pill.includes("hub unreachable")) throw new Error(`the pill should say the hub is unreachable: ${pill}`);
    await browser.addTask("Write offline", "home", 2);
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

let failed = false;
try {
  await main();
} catch (error) {
  failed = true;
  console.error(error instanceof Error ? error.stack || error.message : error);
} finally {
  await Promise.all([...children].map(stop));
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
