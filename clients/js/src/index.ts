// @liveboard/client: live board state, optimistic edits, an offline queue and exactly-once replay
// over Liveboard's Socket.IO API (CONTRACT §8).
export { createClient, LiveboardClient, BOARD_EVENT_TYPES } from './client.js';
export { Board } from './board.js';
export { MemoryStorage, IndexedDBStorage, defaultStorage } from './storage.js';
export { byRank } from './model.js';
export type { Envelope } from './model.js';
export type * from './types.js';
/** The payload types generated from the services' pydantic schemas. */
export type * as BoardEvents from './generated/board-events.js';
export type * as BoardsPayloads from './generated/boards-payloads.js';
export type * as RealtimePayloads from './generated/realtime-payloads.js';
