// Several tabs of one database in real headless Chromium (chromedriver's WebDriver HTTP API),
// against a real hub that also serves the page (wasm/tests/tabs): every tab writes, every tab
// and another device get every write; the leading tab is closed in the middle of a burst of
// writes, then the next leading tab's renderer is crashed (CDP `Page.crash`) in the middle of
// another: the remaining tab takes over each time and nothing acknowledged to a page is lost.
// Prints how long each takeover took, as seen by polling (the benchmark measures it properly).
//
// Usage: node wasm/scripts/tabs-test.mjs MODULE_DIR HUB_BINARY [CHROMEDRIVER]   (make test-wasm-tabs)
// MODULE_DIR holds tidepool_wasm.js and tidepool_wasm_bg.wasm (wasm-bindgen --target web).

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { WAIT_MS, runMain } from "./browser.mjs";
import { openTabsSite } from "./tabs-site.mjs";

const [moduleDir, hubBinary, chromedriverBinary = "/usr/bin/chromedriver"] = process.argv.slice(2);
if (!moduleDir || !hubBinary) {
  console.error("usage: node tabs-test.mjs MODULE_DIR HUB_BINARY [CHROMEDRIVER]");
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), "tidepool-tabs-test-"));
/** Records each tab writes per burst: enough that a takeover lands in the middle of one. */
const BURST = 150;

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` (which returns a truthy value when done) until it holds, or fails with `what`. */
async function until(what, check) {
  const deadline = Date.now() + WAIT_MS;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last === true || (last && last.done)) return last;
    await pause(50);
  }
  throw new Error(`timed out waiting until ${what} (last: ${JSON.stringify(last)})`);
}

class Tabs {
  constructor(browser, url) {
    this.browser = browser;
    this.url = url;
  }

  /** Opens a tab on the test page with IndexedDB database `local`; returns its handle. */
  async open(local) {
    const handle = await this.browser.newTab();
    await this.browser.go(this.url(local));
    await until(`the tab of ${local} has opened its database`, async () => {
      const [ready, error] = await this.browser.run("return [document.body.dataset.ready, document.body.dataset.error]");
      if (error) throw new Error(`the tab of ${local}: ${error}`);
      return ready === "1";
    });
    return handle;
  }

  async in(handle, script, ...args) {
    await this.browser.switchTo(handle);
    return this.browser.run(script, ...args);
  }

  async inAsync(handle, script, ...args) {
    await this.browser.switchTo(handle);
    return this.browser.runAsync(`const done = arguments[arguments.length - 1]; (async () => { ${script} })().then(done, (e) => done({ error: String(e) }));`, ...args);
  }

  status(handle) {
    return this.in(handle, "return tp.db.status()");
  }

  async leaderOf(handles) {
    const leaders = [];
    for (const handle of handles) {
      if ((await this.status(handle)).leader) leaders.push(handle);
    }
    return leaders;
  }

  /** Waits until exactly one of `handles` leads; returns it and the milliseconds since `since`. */
  async oneLeader(handles, since) {
    const found = await until("one tab leads", async () => {
      const leaders = await this.leaderOf(handles);
      return leaders.length === 1 ? { done: true, leader: leaders[0], ms: Date.now() - since } : leaders.length;
    });
    return found;
  }

  startBurst(handle, prefix) {
    return this.in(handle, "tp.burst(arguments[0], arguments[1]); return true", prefix, BURST);
  }

  async burstDone(handle) {
    await until("a burst finished", async () => !(await this.in(handle, "return tp.bursting")));
    const [written, errors] = await this.in(handle, "return [tp.written, tp.errors]");
    expect(errors.length === 0, `writes failed: ${errors.join("; ")}`);
    return written;
  }


  /** Waits until `handle`'s database holds every key of `expected` with its value. */
  async holds(handle, expected, who) {
    await until(`${who} holds all ${expected.length} records`, async () => {
      const missing = await this.inAsync(handle, "return tp.missing(arguments[0])", expected);
      return missing.length === 0 ? true : { missing: missing.length, first: missing.slice(0, 3) };
    });
  }

  /** Waits until `handle` reports synced with nothing pending and an empty outbox. */
  async drained(handle, who) {
    const result = await this.inAsync(handle, "await tp.db.whenSynced(25000); return [tp.db.status(), await tp.outboxRows()]");
    expect(!result.error, `${who} is not synced: ${result.error}`);
    const [status, rows] = result;
    expect(status.pending === 0 && status.synced, `${who} reports ${JSON.stringify(status)}`);
    expect(rows === 0, `${who}'s outbox still has ${rows} rows`);
  }
}

async function main() {
  const { hubUrl, browser } = await openTabsSite(work, moduleDir, hubBinary, chromedriverBinary);
  try {
    const db = `tabs-${Date.now()}`;
    const tabs = new Tabs(browser, (local) => `${hubUrl}/?db=${db}&local=${local}`);
    const blank = await browser.tab();
    const device = await tabs.open(`${db}-device`);
    const shared = `${db}-shared`;

    // Two tabs: both write at once; each hears the other's writes, and the other device gets all.
    const a = await tabs.open(shared);
    const b = await tabs.open(shared);
    expect((await tabs.leaderOf([a, b])).length === 1, "two tabs, not one leader");
    await tabs.startBurst(a, "a");
    await tabs.startBurst(b, "b");
    const two = [...(await tabs.burstDone(a)), ...(await tabs.burstDone(b))];
    expect(two.length === 2 * BURST, `${two.length} writes resolved`);
    for (const [handle, other, who] of [[a, "b", "tab a"], [b, "a", "tab b"]]) {
      await tabs.holds(handle, two, who);
      await until(`${who} heard every write of tab ${other}`, async () => {
        const heard = await tabs.in(handle, "return [...tp.heard].filter((k) => k.startsWith(arguments[0] + '-')).length", other);
        return heard === BURST || heard;
      });
    }
    await tabs.holds(device, two, "the other device");
    for (const [handle, who] of [[a, "tab a"], [b, "tab b"]]) await tabs.drained(handle, who);
    console.log(`two tabs: ${two.length} writes from both reached both tabs (subscribe fired) and the hub`);

    // Three tabs: the leader is closed in the middle of a burst in every tab.
    const c = await tabs.open(shared);
    const [leader] = await tabs.leaderOf([a, b, c]);
    const followers = [a, b, c].filter((h) => h !== leader);
    const names = new Map([[a, "a"], [b, "b"], [c, "c"]]);
    for (const handle of [a, b, c]) await tabs.startBurst(handle, `${names.get(handle)}2`);
    const second = (handle) => tabs.in(handle, "return tp.written.filter((k) => k.startsWith(arguments[0]))", `${names.get(handle)}2-`);
    await until("the leader is in the middle of its burst", async () => (await second(leader)).length >= BURST / 3);
    const leaderWrote = await second(leader);
    await browser.switchTo(leader);
    const closedAt = Date.now();
    await browser.closeTab();
    const afterClose = await tabs.oneLeader(followers, closedAt);
    const three = [...leaderWrote];
    for (const handle of followers) {
      await tabs.burstDone(handle);
      three.push(...(await second(handle)));
    }
    for (const handle of followers) await tabs.holds(handle, [...two, ...three], `tab ${names.get(handle)}`);
    await tabs.holds(device, [...two, ...three], "the other device");
    for (const handle of followers) await tabs.drained(handle, `tab ${names.get(handle)}`);
    console.log(`three tabs: leader closed after ${leaderWrote.length} of its writes; took over in ~${afterClose.ms} ms; ${three.length} writes arrived`);

    // Two tabs left: the leader's renderer crashes in the middle of a burst in both.
    const [crashing] = await tabs.leaderOf(followers);
    const [survivor] = followers.filter((h) => h !== crashing);
    for (const handle of followers) await tabs.startBurst(handle, `${names.get(handle)}3`);
    const third = (handle) => tabs.in(handle, "return tp.written.filter((k) => k.startsWith(arguments[0]))", `${names.get(handle)}3-`);
    await until("the leader is in the middle of its burst", async () => (await third(crashing)).length >= BURST / 3);
    const crashedWrote = await third(crashing);
    await browser.switchTo(crashing);
    const crashedAt = Date.now();
    // The renderer dies, so the command may never be answered.
    await Promise.race([browser.call("POST", `${browser.session}/goog/cdp/execute`, { cmd: "Page.crash", params: {} }).catch(() => {}), pause(1_000)]);
    const afterCrash = await tabs.oneLeader([survivor], crashedAt);
    await tabs.burstDone(survivor);
    const survived = await third(survivor);
    const all = [...two, ...three, ...crashedWrote, ...survived];
    await tabs.holds(survivor, all, "the surviving tab");
    await tabs.holds(device, all, "the other device");
    await tabs.drained(survivor, "the surviving tab");
    console.log(`crash: the leader's renderer crashed after ${crashedWrote.length} of its writes; took over in ~${afterCrash.ms} ms; ${all.length} writes in all arrived`);
    await browser.switchTo(crashing);
    await browser.closeTab().catch(() => {});
    await browser.switchTo(blank);
  } finally {
    await browser.close();
  }
}

await runMain(main, work);
