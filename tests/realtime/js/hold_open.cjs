// Connects like a browser tab and stays connected until the server closes it; prints what it got.
const { io } = require("socket.io-client");
const cfg = JSON.parse(process.env.LIVEBOARD_CLIENT);
const socket = io(`${cfg.url}/workspace`, { auth: { token: cfg.token }, transports: ["websocket"],
  reconnection: false });
socket.on("connect", () => process.stdout.write(JSON.stringify({ event: "connect" }) + "\n"));
socket.on("server_shutdown", (data) => process.stdout.write(JSON.stringify({ event: "server_shutdown", data }) + "\n"));
socket.on("disconnect", (reason) => process.stdout.write(JSON.stringify({ event: "disconnect", data: reason }) + "\n"));
setTimeout(() => process.exit(0), cfg.timeout_ms || 30000);
