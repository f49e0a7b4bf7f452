// The load client for the automerge-repo sync server, with the workload of `tidepool-load`:
// simulated clients, each its own Repo and WebSocket, each owning one field per document
// (`c<client>`), whose n-th write to a document sets that field to n, in a closed loop of at most
// WINDOW unconfirmed writes. automerge-repo has no acknowledgement, so a write counts as confirmed
// when the server's heads, as the sync protocol reports them to the writer, contain it: the
// document viewed at those heads holds the writer's field at n or more.
//
// Modes (one JSON line on stdout each):
//   seed  URL DOCS FIELDS OUT          create DOCS documents (FIELDS fields each), wait until the
//                                      server holds them, write their URLs to OUT
//   part  URL DOCSFILE FIRST COUNT CLIENTS OPS WINDOW CAP TRACE
//                                      run clients FIRST..FIRST+COUNT of CLIENTS; coordinated over
//                                      stdin/stdout by bench/run_load.py (ready, go, written, all
//                                      finals, converged); per-write times go to TRACE
//   fresh URL DOCSFILE CAP             a fresh client fetches every document; times it
import * as A from "@automerge/automerge"
import { Repo, decodeHeads } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { readFileSync, writeFileSync } from "node:fs"
import { createInterface } from "node:readline"

const now = () => performance.timeOrigin + performance.now()
const sleep = ms => new Promise(r => setTimeout(r, ms))

async function connect(url) {
  // Clients keep the default share policy: they announce their documents to their one peer.
  const repo = new Repo({ network: [new WebSocketClientAdapter(url)] })
  const server = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no peer at ${url} within 60 s`)), 60_000)
    repo.networkSubsystem.once("peer", ({ peerId }) => {
      clearTimeout(timer)
      resolve(peerId)
    })
  })
  // The server has storage, so it advertises a storage id; its heads are reported under it.
  const storageId = repo.getStorageIdOfPeer(server)
  if (!storageId) throw new Error("the server advertised no storage id")
  return { repo, storageId }
}

// Resolves when the server's heads for the handle, as the sync protocol reports them, contain
// the local heads (only the seeding client writes these documents, so that is enough).
function serverHas(handle, storageId, timeoutMs) {
  const has = heads => handle.heads().every(h => heads.includes(h))
  return new Promise((resolve, reject) => {
    const known = handle.getSyncInfo(storageId)?.lastHeads
    if (known && has(known)) return resolve()
    const timer = setTimeout(() => reject(new Error("server did not confirm a document in time")), timeoutMs)
    const on = ({ storageId: s, heads }) => {
      if (s === storageId && has(heads)) {
        clearTimeout(timer)
        handle.off("remote-heads", on)
        resolve()
      }
    }
    handle.on("remote-heads", on)
  })
}

// Runs `f` over `items`, at most FIND_CONCURRENCY at a time: hundreds of concurrent requests make
// the server answer "unavailable" for documents it holds.
async function pool(items, f) {
  const out = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await f(items[i])
    }
  }
  await Promise.all(Array.from({ length: Number(process.env.FIND_CONCURRENCY ?? 20) }, worker))
  return out
}

// Under load the server sometimes answers that a document it holds is unavailable (it had not
// loaded it from storage yet). It remembers that this peer wants the document and sends it once it
// has it, so an unavailable handle is given time to become ready.
async function findRetrying(repo, url) {
  const handle = await repo.find(url, { allowableStates: ["ready", "unavailable"] })
  if (handle.isReady()) return handle
  await Promise.race([handle.whenReady(["ready"]).catch(() => {}), sleep(60_000)])
  if (handle.isReady()) return handle
  throw new Error(`${url} stayed unavailable for 60 s`)
}

async function seed([url, docs, fields, out]) {
  const { repo, storageId } = await connect(url)
  const started = now()
  const urls = []
  const pending = []
  for (let i = 0; i < Number(docs); i++) {
    const init = {}
    for (let f = 0; f < Number(fields); f++) init[`f${f}`] = `value ${i} ${f}`
    const handle = repo.create(init)
    urls.push(handle.url)
    pending.push(serverHas(handle, storageId, 600_000))
    // Bounded batches keep the server's queue from growing without end.
    if (pending.length >= 200) await Promise.all(pending.splice(0))
  }
  await Promise.all(pending)
  writeFileSync(out, JSON.stringify(urls))
  console.log(JSON.stringify({ mode: "seed", docs: urls.length, seconds: (now() - started) / 1000 }))
  process.exit(0)
}

async function fresh([url, docsFile, cap]) {
  const urls = JSON.parse(readFileSync(docsFile, "utf8"))
  const { repo } = await connect(url)
  const started = now()
  let done = 0
  let unavailable = 0
  // Runs `f` over `items`, at most FIND_CONCURRENCY at a time: hundreds of concurrent requests make
// the server answer "unavailable" for documents it holds.
async function pool(items, f) {
  const out = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await f(items[i])
    }
  }
  await Promise.all(Array.from({ length: Number(process.env.FIND_CONCURRENCY ?? 20) }, worker))
  return out
}

// The server sometimes answers that it does not have a document it holds; such a document counts
  // as not fetched.
  const all = pool(urls, u => findRetrying(repo, u).then(() => done++, () => unavailable++))
  const capped = await Promise.race([all.then(() => false), sleep(Number(cap) * 1000).then(() => true)])
  const seconds = (now() - started) / 1000
  console.log(JSON.stringify({ mode: "fresh", records: urls.length, fetched: done, unavailable, seconds, finished: !capped && done === urls.length }))
  process.exit(0)
}

async function part([url, docsFile, first, count, clients, ops, window, cap, trace]) {
  const urls = JSON.parse(readFileSync(docsFile, "utf8"))
  const R = urls.length
  ;[first, count, clients, ops, window, cap] = [first, count, clients, ops, window, cap].map(Number)
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
  const nextLine = async () => (await lines.next()).value
  const puts = [] // [writer, record, n, t]
  const seen = new Map() // "w,r,n" -> [observers here that saw it, time the last of them did]
  const sims = []
  const setup = async me => {
    const { repo, storageId } = await connect(url)
    const handles = await pool(urls, u => findRetrying(repo, u))
    const sim = { me, handles, storageId, counts: new Int32Array(R), confirmed: new Int32Array(R), wake: null, observed: new Map() }
    handles.forEach((handle, r) => {
      handle.on("change", ({ doc, patches }) => {
        const t = now()
        for (const p of patches) {
          const name = p.path[0]
          if (typeof name !== "string" || name[0] !== "c") continue
          const w = Number(name.slice(1))
          if (w === me || !Number.isInteger(w)) continue
          const v = doc[name]
          const key = w * R + r
          for (let n = (sim.observed.get(key) ?? 0) + 1; n <= v; n++) {
            const k = `${w},${r},${n}`
            const e = seen.get(k)
            if (e) {
              e[0]++
              e[1] = t
            } else seen.set(k, [1, t])
          }
          if (v > (sim.observed.get(key) ?? 0)) sim.observed.set(key, v)
        }
      })
      handle.on("remote-heads", ({ storageId: s, heads }) => {
        if (s !== storageId) return
        try {
          const v = A.view(handle.doc(), decodeHeads(heads))[`c${me}`] ?? 0
          if (v > sim.confirmed[r]) {
            sim.confirmed[r] = v
            sim.wake?.()
          }
        } catch {
          // Heads the writer has not received yet; a later report will do.
        }
      })
    })
    return sim
  }
  // The clients of this process set up one after another. All at once, their thousands of
  // concurrent finds made automerge-repo give up waiting for documents it held ("error waiting for
  // ... to be in one of states: ready"), and no run at 50 or 200 clients ever started.
  for (let i = 0; i < count; i++) sims.push(await setup(first + i))
  console.log("ready")
  if ((await nextLine()) !== "go") process.exit(1)
  const started = now()
  const deadline = started + cap * 1000
  let written = 0
  let confirmedWrites = 0
  let seed = 0x9e3779b9
  const random = () => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) / 4294967296
  }
  const perClient = me => Math.floor(ops / clients) + (me < ops % clients ? 1 : 0)
  await Promise.all(
    sims.map(async sim => {
      const inflight = []
      const wait = () => new Promise(r => (sim.wake = r))
      const drain = () => {
        while (inflight.length && sim.confirmed[inflight[0][0]] >= inflight[0][1]) {
          inflight.shift()
          confirmedWrites++
        }
      }
      for (let i = 0; i < perClient(sim.me) && now() < deadline; i++) {
        drain()
        while (inflight.length >= Math.max(1, window) && now() < deadline) {
          await Promise.race([wait(), sleep(Math.max(1, deadline - now()))])
          drain()
        }
        if (now() >= deadline) break
        const r = Math.floor(random() * R)
        const n = ++sim.counts[r]
        puts.push([sim.me, r, n, now()])
        sim.handles[r].change(d => {
          d[`c${sim.me}`] = n
        })
        inflight.push([r, n])
        written++
        // Let the network and the other simulated clients run.
        if (written % 4 === 0) await new Promise(setImmediate)
      }
      while (inflight.length && now() < deadline) {
        await Promise.race([wait(), sleep(Math.max(1, deadline - now()))])
        drain()
      }
    }),
  )
  const writeSeconds = (now() - started) / 1000
  const finals = []
  for (const sim of sims) sim.counts.forEach((n, r) => n > 0 && finals.push([sim.me, r, n]))
  console.log(JSON.stringify({ written: finals, writes: written, confirmed: confirmedWrites, seconds: writeSeconds }))
  const all = JSON.parse(await nextLine())
  const convergeDeadline = now() + Number(process.env.CONVERGE_S ?? 60) * 1000
  const convergedNow = () =>
    sims.every(sim => all.every(([w, r, n]) => w === sim.me || (sim.handles[r].doc()[`c${w}`] ?? 0) >= n))
  let converged = convergedNow()
  while (!converged && now() < convergeDeadline) {
    await sleep(100)
    converged = convergedNow()
  }
  writeFileSync(trace, JSON.stringify({ puts, seen: [...seen].map(([k, [c, t]]) => [...k.split(",").map(Number), c, t]) }))
  console.log(JSON.stringify({ converged, writes: written, confirmed: confirmedWrites, seconds: writeSeconds }))
  process.exit(0)
}

const [mode, ...args] = process.argv.slice(2)
const modes = { seed, part, fresh }
if (!modes[mode]) {
  console.error("usage: node load.mjs seed|part|fresh ...")
  process.exit(2)
}
modes[mode](args).catch(e => {
  console.error(e)
  process.exit(1)
})
