// The benchmark's Socket.IO peer: join a room (acknowledged), broadcast to the room excluding
// the sender ("emit") or including it ("emit_all", used to pace saturation), with the
// MessagePack parser and the websocket transport only.
//
//   node server.js [PORT]    (default 3000)
//   BENCH_GC_EVERY_MS=1000 node --expose-gc server.js   (idle memory runs: let GC settle)
"use strict";
const { createServer } = require("http");
const { Server } = require("socket.io");
const parser = require("socket.io-msgpack-parser");

const port = Number(process.argv[2] || process.env.PORT || 3000);
const httpServer = createServer();
const io = new Server(httpServer, {
  parser,
  transports: ["websocket"],
  serveClient: false,
  maxHttpBufferSize: 65536,
});

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack();
  });
  socket.on("emit", (room, data) => {
    socket.to(room).emit("e", room, socket.id, data);
  });
  socket.on("emit_all", (room, data) => {
    io.to(room).emit("e", room, socket.id, data);
  });
});

const gcEvery = Number(process.env.BENCH_GC_EVERY_MS || 0);
if (gcEvery > 0 && typeof global.gc === "function") {
  setInterval(() => global.gc(), gcEvery).unref();
}

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`listening on ${port}`);
});
