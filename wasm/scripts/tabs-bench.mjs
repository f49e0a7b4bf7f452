// Benchmark (make bench-wasm-tabs, not a test): tabs of one database in headless Chromium, on the
// page of wasm/tests/tabs served by a real hub, optimized module.
// - Cross-tab visibility: a tab writes a record stamped with a clock all tabs share
//   (performance.timeOrigin + now()); another tab's `subscribe` listener notes when it hears it.
//   Baselines in the same run: the writing tab's own listener (same-tab visibility) and a plain
//   BroadcastChannel message posted by the writing tab right after each write.
// - Takeover: the leading tab is closed, or its renderer crashed (CDP Page.crash); the time until
//   another tab leads and until it is online again. Baseline in the same event: a plain Web Lock
//   held by the ended tab, granted to the same waiting tab.
// Prints `BENCH {json}` lines for bench/capture.sh.
//
// Usage: node wasm/scripts/tabs-bench.mjs MODULE_DIR HUB_BINARY [CHROMEDRIVER]

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { WAIT_MS, runMain } from "./browser.mjs";
import { openTabsSite } from "./tabs-site.mjs";

const [moduleDir, hubBinary, chromedriverBinary = "/usr/bin/chromedriver"] = process.argv.slice(2);
if (!moduleDir || !hubBinary) {
  console.error("usage: node tabs-bench.mjs MODULE_DIR HUB_BINARY [CHROMEDRIVER]");
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), "tidepool-tabs-bench-"));
const WRITES = 200;
const TAKEOVERS = 9;

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check) {
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    const value = await check();
    if (value) return value;
    await pause(20);
  }
  throw new Error(`timed out waiting until ${what}`);
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

const round1 = (v) => Math.round(v * 10) / 10;

async function main() {
  const { hubUrl, browser } = await openTabsSite(work, moduleDir, hubBinary, chromedriverBinary);
  const run = async (handle, script, ...args) => {
    await browser.switchTo(handle);
    return browser.run(script, ...args);
  };
  const blank = await browser.tab();
  const open = async (db, local) => {
    // A new tab opens from a tab that is still there.
    await browser.switchTo(blank);
    const handle = await browser.newTab();
    await browser.go(`${hubUrl}/?db=${db}&local=${local}`);
    await until(`the tab of ${local} is ready`, async () => {
      const [ready, error] = await browser.run("return [document.body.dataset.ready, document.body.dataset.error]");
      if (error) throw new Error(error);
      return ready === "1";
    });
    return handle;
  };
  try {
    // Cross-tab visibility, writes from the follower and then from the leader.
    const db = `tabs-bench-${Date.now()}`;
    const leader = await open(db, `${db}-shared`);
    const follower = await open(db, `${db}-shared`);
    for (const [writer, prefix] of [[follower, "f"], [leader, "l"]]) {
      await browser.switchTo(writer);
      const result = await browser.runAsync("const done = arguments[arguments.length - 1]; tp.visibility(arguments[0], arguments[1]).then(() => done('ok'), (e) => done(String(e)));", prefix, WRITES);
      if (result !== "ok") throw new Error(`writes failed: ${result}`);
    }
    const latencies = [];
    for (const handle of [leader, follower]) {
      latencies.push(await until("every write was heard", async () => {
        const l = await run(handle, "return tp.latencies");
        return l.other.length >= WRITES && l.raw.length >= WRITES && l.own.length >= WRITES ? l : null;
      }));
    }
    const cross = latencies.flatMap((l) => l.other);
    const own = latencies.flatMap((l) => l.own);
    const raw = latencies.flatMap((l) => l.raw);
    console.log(`BENCH ${JSON.stringify({
      case: "cross-tab visibility of a put", writes: cross.length,
      cross_tab_p50_ms: round1(percentile(cross, 0.5)), cross_tab_p99_ms: round1(percentile(cross, 0.99)),
      same_tab_p50_ms: round1(percentile(own, 0.5)), same_tab_p99_ms: round1(percentile(own, 0.99)),
      plain_channel_p50_ms: round1(percentile(raw, 0.5)), plain_channel_p99_ms: round1(percentile(raw, 0.99)),
      cross_vs_same_tab_p50: round1(percentile(cross, 0.5) / percentile(own, 0.5)),
    })}`);
    for (const handle of [follower, leader]) {
      await browser.switchTo(handle);
      await browser.closeTab();
    }

    // Takeover: the leading tab closes (or its renderer crashes) while online; the other leads
    // and reconnects.
    for (const how of ["closes", "crashes"]) {
      const lead = [], online = [], rawLock = [];
      for (let round = 0; round < TAKEOVERS; round++) {
        const db = `tabs-takeover-${Date.now()}-${round}`;
        const first = await open(db, `${db}-shared`);
        const second = await open(db, `${db}-shared`);
        await until("the first tab leads, online", async () => {
          const s = await run(first, "return tp.db.status()");
          return s.leader && s.connection === "online";
        });
        await until("the second tab follows, online", async () => {
          const s = await run(second, "return [tp.db.status(), tp.rawLockAt]");
          return !s[0].leader && s[0].connection === "online" && s[1] == null;
        });
        await browser.switchTo(first);
        const endedAt = Date.now();
        if (how === "closes") {
          await browser.closeTab();
        } else {
          // The renderer dies, so the command may never be answered.
          await Promise.race([browser.call("POST", `${browser.session}/goog/cdp/execute`, { cmd: "Page.crash", params: {} }).catch(() => {}), pause(1_000)]);
        }
        const [ledAt, onlineAt, rawAt] = await until("the second tab leads, online", async () => {
          const t = await run(second, "return [tp.ledAt, tp.onlineAt, tp.rawLockAt]");
          return t.every((v) => typeof v === "number") ? t : null;
        });
        lead.push(ledAt - endedAt);
        online.push(onlineAt - endedAt);
        rawLock.push(rawAt - endedAt);
        await browser.closeTab();
        if (how === "crashes") {
          await browser.switchTo(first);
          await browser.closeTab().catch(() => {});
        }
      }
      console.log(`BENCH ${JSON.stringify({
        case: `takeover when the leading tab ${how}`, rounds: TAKEOVERS,
        to_lead_p50_ms: percentile(lead, 0.5), to_lead_max_ms: Math.max(...lead),
        to_online_p50_ms: percentile(online, 0.5), to_online_max_ms: Math.max(...online),
        plain_lock_handover_p50_ms: percentile(rawLock, 0.5),
        lead_vs_plain_lock_p50: round1(percentile(lead, 0.5) / Math.max(1, percentile(rawLock, 0.5))),
      })}`);
    }
    await browser.switchTo(blank);
  } finally {
    await browser.close();
  }
}

await runMain(main, work);
