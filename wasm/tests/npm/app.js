// The app of the npm package test: imported from the installed package, bundled by esbuild.
// `?role=writer` puts a record and updates one field; `?role=reader` waits until the record
// reaches it through the hub. Either way the page shows the record in `body[data-result]`.

import init, { Tidepool } from "@tidepool/browser";
import wasmUrl from "@tidepool/browser/tidepool_wasm_bg.wasm";

async function main() {
  await init({ module_or_path: wasmUrl });
  const params = new URLSearchParams(location.search);
  const role = params.get("role");
  const name = params.get("db");
  const db = await Tidepool.open({ name, localName: `${name}-${role}`, stores: ["notes"], hub: `ws://${location.host}/v1/sync` });
  if (role === "writer") {
    await db.put("notes", "n1", { title: "milk", done: false, note: "soon" });
    await db.update("notes", "n1", { done: true, note: undefined, by: { who: "npm" } });
    await db.whenSynced(30_000);
  } else {
    await new Promise((resolve) => {
      const check = async () => {
        const value = await db.get("notes", "n1");
        if (value && value.done === true) resolve();
      };
      db.subscribe("notes", () => check());
      check();
    });
  }
  document.body.dataset.result = JSON.stringify(await db.get("notes", "n1"));
  document.body.dataset.status = JSON.stringify(db.status());
}

main().catch((error) => {
  document.body.dataset.error = `${error.code ?? error.name}: ${error.message}`;
});
