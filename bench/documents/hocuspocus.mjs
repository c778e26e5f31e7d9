// The peer for bench/documents: a plain Hocuspocus 4 server (no extensions), documents in
// memory, as its README starts one.   PORT=1234 node hocuspocus.mjs
import { Server } from "@hocuspocus/server";
const server = new Server({ quiet: true });
await server.listen(Number(process.env.PORT ?? 1234));
console.log("hocuspocus listening");
process.on("SIGTERM", () => process.exit(0));
