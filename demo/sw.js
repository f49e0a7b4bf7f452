// Tidepool Tasks' service worker: keeps the app shell (page, script, styles, client module) so the
// page opens while the network or the hub is down; the tasks themselves are in IndexedDB.
//
// Network first: while the hub answers, every load gets the current files and refreshes the
// cache; when it does not, the cached copy is served. The sync socket and other origins are left
// alone.

const CACHE = "tidepool-tasks-shell-v1";
const SHELL = ["./", "index.html", "app.js", "style.css", "pkg/tidepool_wasm.js", "pkg/tidepool_wasm_bg.wasm"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin || url.pathname.endsWith("/v1/sync")) return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          // The page is cached under its path without the query (?user=...), which it ignores
          // when served offline too.
          const key = request.mode === "navigate" ? new Request(url.pathname) : request;
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(key, copy)));
        }
        return response;
      })
      .catch(async () => {
        const cached = await caches.match(request, { ignoreSearch: request.mode === "navigate" });
        return cached || (request.mode === "navigate" ? caches.match("index.html") : Response.error());
      }),
  );
});
