// The Node socket.io 4 reference for `liveboard bench fanout --reference node`.
//
// The same wire contract as the realtime service for what the bench uses — namespace /workspace,
// join_board (ack with seq), task_moved (ack, then the envelope to the board room) — and the same
// envelope shape and size, but no auth, persistence or NATS: it measures what Node's socket.io
// spends on the fan-out itself. Installed from npm into a temporary folder, never committed.
"use strict";
const { randomUUID } = require("node:crypto");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 0);
const io = new Server(port, { path: "/socket.io/", serveClient: false, pingInterval: 25000, pingTimeout: 20000 });
const workspace = io.of("/workspace");
const seqs = new Map();

workspace.on("connection", (socket) => {
  socket.emit("connection_established", { sid: socket.id, user_id: null, timestamp: new Date().toISOString() });
  socket.on("join_board", (data, ack) => {
    socket.join(`board:${data.board_id}`);
    if (typeof ack === "function") ack({ ok: true, data: { board_id: data.board_id, seq: seqs.get(data.board_id) || 0 } });
  });
  socket.on("task_moved", (data, ack) => {
    const seq = (seqs.get(data.board_id) || 0) + 1;
    seqs.set(data.board_id, seq);
    const now = new Date().toISOString();
    const moved = {
      task_id: data.task_id, from_column_id: data.from_column_id, to_column_id: data.to_column_id,
      position: data.position, moved_by: { id: "00000000-0000-4000-8000-00000000a11c", email: "bench@example.com" },
      timestamp: now,
      task: {
        id: data.task_id, board_id: data.board_id, column_id: data.to_column_id, position: data.position, rank: "Zz",
        title: "card 9", description: "", due_date: null, labels: [], assignee_ids: [], version: seq,
        created_by: "00000000-0000-4000-8000-00000000a11c", created_at: now, updated_at: now,
      },
    };
    const envelope = {
      event_type: "task_moved", data: moved, user_id: moved.moved_by.id, board_id: data.board_id, seq,
      event_id: randomUUID(), timestamp: now, correlation_id: data.correlation_id,
    };
    workspace.to(`board:${data.board_id}`).emit("task_moved", envelope);
    if (typeof ack === "function") ack({ ok: true, data: { ...moved, seq, event_id: envelope.event_id } });
  });
});
io.httpServer.on("listening", () => console.log(`listening ${io.httpServer.address().port}`));
process.on("SIGTERM", () => io.close(() => process.exit(0)));
