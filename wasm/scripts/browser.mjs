// Helpers for tests that drive headless Chromium through chromedriver's WebDriver HTTP API
// (no packages needed) against real processes: start and stop processes, free ports, a browser
// session with waits that poll the page and report what it shows when they time out.

import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer } from "node:net";

export const WAIT_MS = 30_000;
/** Every process started here and still running, so a test can stop them all. */
export const children = new Set();

/**
 * Runs a test's `main`, then, whatever happened, stops every process it started and removes
 * its `work` directory; exits 1 (after printing the error) if `main` failed.
 */
export async function runMain(main, work) {
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
}

export function freePort() {
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
export function start(name, command, args, ready) {
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

/**
 * Stops a process and waits until it has exited: SIGTERM unless told otherwise, then SIGKILL
 * after 3 s (chromedriver ignores SIGTERM while it has served a session).
 */
export function stop(child, signal = "SIGTERM") {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

// Interrupted tests leave no process behind: the signal stops every child first.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    for (const child of children) child.kill("SIGKILL");
    process.exit(130);
  });
}

export class Browser {
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

  /** Opens a new tab and switches to it; returns its handle. */
  async newTab() {
    const { handle } = await this.call("POST", `${this.session}/window/new`, { type: "tab" });
    await this.call("POST", `${this.session}/window`, { handle });
    return handle;
  }

  /** Switches to the tab `handle`. */
  switchTo(handle) {
    return this.call("POST", `${this.session}/window`, { handle });
  }

  /** The current tab's handle. */
  tab() {
    return this.call("GET", `${this.session}/window`);
  }

  /** Closes the current tab; switch to another one afterwards. */
  closeTab() {
    return this.call("DELETE", `${this.session}/window`);
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
      return await this.run("return document.body.outerHTML.slice(0, 4000)");
    } catch (e) {
      return String(e);
    }
  }

  close() {
    return this.session ? this.call("DELETE", this.session).catch(() => {}) : Promise.resolve();
  }
}

