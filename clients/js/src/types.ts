// The public types of @liveboard/client. Server records (boards, columns, cards, conflicts) and
// change sets are the types generated from the services' own pydantic schemas (src/generated/).
import type { Board as BoardRecord, Card, Column, Conflict } from './generated/board-events.js';
import type { BoardChanges, CardChanges, ColumnChanges } from './generated/boards-payloads.js';

export type { BoardRecord, Card, Column, Conflict, BoardChanges, CardChanges, ColumnChanges };

/** The connection: `offline` once a (re)connect attempt has failed or the browser is offline. */
export type ClientStatus = 'connecting' | 'connected' | 'reconnecting' | 'offline' | 'closed';
/** One open board: `catching_up` while (re-)joining with `since_seq`, `resyncing` while loading a fresh snapshot. */
export type BoardStatus = 'live' | 'catching_up' | 'resyncing' | 'offline';
export type ChangeCause = 'local' | 'remote' | 'resync' | 'rollback';

/** The socket events that change a board (CONTRACT §4), as the SDK sends them. */
export type MutationType =
  | 'task_created'
  | 'task_moved'
  | 'task_updated'
  | 'task_deleted'
  | 'task_assigned'
  | 'task_commented'
  | 'board_updated'
  | 'column_updated'
  | 'column_reordered';

/** A board as the SDK shows it: columns in order, cards grouped by column in order, integer positions. */
export interface BoardState {
  board: BoardRecord | null;
  columns: Column[];
  cards: Card[];
  /** The last server `seq` this state includes (pending operations have none). */
  seq: number;
  /** The board was deleted (`board_deleted`). */
  deleted: boolean;
}

/** What `getBoard`/REST and a `join_board` ack call a snapshot. */
export interface Snapshot {
  board: BoardRecord | null;
  columns: Column[];
  cards: Card[];
  seq: number;
}

/** A mutation made here that the server has not confirmed yet. */
export interface PendingOperation {
  clientOpId: string;
  type: MutationType;
  payload: Record<string, unknown>;
  /** `queued`: waiting to be sent (offline, or before catch-up); `sent`: on the wire or acked, its event not applied yet. */
  status: 'queued' | 'sent';
}

/** How the server refuses: `{code, message}` plus details such as `current` (the card, on `version_conflict`). */
export interface LiveboardError {
  code: string;
  message: string;
  [detail: string]: unknown;
}

/** A mutation's answer: the broadcast's `data` plus `seq` and `event_id`. */
export interface MutationResult {
  seq: number;
  event_id: string;
  conflict?: Conflict | null;
  [field: string]: unknown;
}

export interface ChangeEvent {
  state: BoardState;
  cause: ChangeCause;
}
export interface ConflictEvent {
  /** The operation the server resolved differently (null for a `task_conflict` of another tab's operation). */
  op: PendingOperation | null;
  conflict: Conflict;
  /** The card as the server placed it. */
  task: Card | null;
}
export interface RejectedEvent {
  op: PendingOperation;
  error: LiveboardError;
}
export interface PresenceMember {
  user_id: string;
  email: string | null;
  status: 'online' | 'away';
}
export interface TypingEvent {
  user_id: string;
  email: string | null;
  task_id: string | null;
  is_typing: boolean;
}
export interface CursorEvent {
  user_id: string;
  email: string | null;
  x: number;
  y: number;
  task_id: string | null;
}

/** What a board keeps in `storage`: the queue, and the last confirmed snapshot (for opening offline). */
export interface StoredBoard {
  pending: StoredOperation[];
  snapshot: Snapshot | null;
}
export interface StoredOperation extends PendingOperation {
  createdAt: number;
  /** The `seq` the server acknowledged it with, when known. */
  ackSeq?: number;
}

/** Where pending operations survive a reload: IndexedDB in browsers, memory in Node, or your own. */
export interface Storage {
  load(key: string): Promise<StoredBoard | null>;
  save(key: string, value: StoredBoard): Promise<void>;
  remove(key: string): Promise<void>;
}

export interface ClientOptions {
  /** The realtime service, e.g. `http://127.0.0.1:8000` (the namespace is added). */
  url: string;
  /** A current Supabase access token; called at every (re)connect and on `token_expiring`. */
  getToken: () => string | Promise<string>;
  storage?: Storage;
  /** Default `/workspace`. */
  namespace?: string;
  /** socket.io-client transports (default: polling, upgraded to websocket). */
  transports?: ('polling' | 'websocket' | 'webtransport')[];
  /** socket.io-client's reconnection backoff: first delay (default 500 ms), cap (10 s), jitter (0.5). */
  reconnectionDelay?: number;
  reconnectionDelayMax?: number;
  randomizationFactor?: number;
  /** How long an event waits for its ack before it is sent again with the same `client_op_id` (default 20 s). */
  ackTimeoutMs?: number;
  /** How long an out-of-order event waits for the missing ones before the board re-joins (default 400 ms). */
  gapDelayMs?: number;
  /** Anything else for `io()` (e.g. `extraHeaders` in Node). */
  socketOptions?: Record<string, unknown>;
}

export interface OpenBoardOptions {
  boardId: string;
  organizationId: string;
  divisionId?: string | null;
}

export interface ClientEvents {
  status: ClientStatus;
  error: LiveboardError;
  connected: { user_id: string; email: string | null; organizations: unknown[] };
}

export interface BoardEvents {
  change: ChangeEvent;
  conflict: ConflictEvent;
  rejected: RejectedEvent;
  status: BoardStatus;
  presence: PresenceMember[];
  typing: TypingEvent;
  cursor: CursorEvent;
  /** The board was deleted, or access to it was revoked (`board_access_revoked`). */
  closed: { reason: 'deleted' | 'access_revoked' | 'closed' };
  error: LiveboardError;
}
