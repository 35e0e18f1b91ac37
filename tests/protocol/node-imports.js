// From socketio/socket.io-protocol (commit 4f633dd6a4445492d57af3b27ddd2d336014f1f1), test-suite/node-imports.js;
// MIT License, Copyright (c) Socket.IO contributors (./LICENSE). Unchanged.
import fetch from "node-fetch";
import { WebSocket } from "ws";
import chai from "chai";
import chaiString from "chai-string";

chai.use(chaiString);

globalThis.fetch = fetch;
globalThis.WebSocket = WebSocket;
globalThis.chai = chai;
