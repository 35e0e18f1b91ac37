// The seed document's client snippet, run with the official socket.io-client under Node.
// Configuration comes as JSON in LIVEBOARD_CLIENT; every received event is printed as a JSON line.
const { io } = require("socket.io-client");

const cfg = JSON.parse(process.env.LIVEBOARD_CLIENT);
const print = (event, data) => process.stdout.write(JSON.stringify({ event, data }) + "\n");

const options = { auth: { token: cfg.token } };
if (cfg.transports) options.transports = cfg.transports;
if (cfg.extraHeaders) options.extraHeaders = cfg.extraHeaders;
const socket = io(`${cfg.url}/workspace`, options);

// As in the seed: join right away (the client buffers until connected) and listen for moves.
if (cfg.board) {
  socket.emit("join_board", {
    board_id: cfg.board.board_id,
    organization_id: cfg.board.organization_id,
    division_id: cfg.board.division_id,
  });
}
socket.on("task_moved", (data) => print("task_moved", data));
socket.on("connection_established", (data) => print("connection_established", data));
socket.on("error", (data) => print("error", data));
socket.on("connect", () => print("connect", { id: socket.id, transport: socket.io.engine.transport.name }));
socket.on("connect_error", (err) => {
  print("connect_error", { message: err.message, data: err.data || null });
  socket.close();
  process.exit(0);
});

const moveTask = (taskId, fromColumn, toColumn, position) => {
  socket.emit("task_moved", {
    task_id: taskId,
    from_column_id: fromColumn,
    to_column_id: toColumn,
    position: position,
    board_id: cfg.board.board_id,
  });
};

if (cfg.move) {
  socket.once("connection_established", () => {
    // Acked join first, so the move below is certainly after it (the seed's emit has no ack).
    socket.emit("join_board", { board_id: cfg.board.board_id, organization_id: cfg.board.organization_id },
      (answer) => {
        print("join_ack", answer);
        moveTask(cfg.move.task_id, cfg.move.from_column_id, cfg.move.to_column_id, cfg.move.position);
      });
  });
}

setTimeout(() => {
  print("done", { transport: socket.io.engine ? socket.io.engine.transport.name : null });
  socket.close();
  process.exit(0);
}, cfg.timeout_ms || 3000);
