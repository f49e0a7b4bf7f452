// The automerge-repo sync server the benchmark measures, set up as the package's README shows: a
// Repo with the WebSocket server adapter and file storage, sharing documents only with peers that
// ask for them by id. Prints "listening on PORT" once it accepts connections.
import { Repo } from "@automerge/automerge-repo"
import { WebSocketServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { WebSocketServer } from "ws"

const [dir, portArg] = process.argv.slice(2)
if (!dir) {
  console.error("usage: node server.mjs DATA_DIR [PORT]")
  process.exit(2)
}
const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(portArg ?? 0) })
new Repo({
  network: [new WebSocketServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dir),
  // A server shares a document only with a peer that asks for it by id.
  sharePolicy: async () => false,
})
wss.on("listening", () => console.log(`listening on ${wss.address().port}`))
const stop = () => {
  wss.close()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
