// The connection: one socket.io-client socket on `/workspace`, its own reconnection (configured
// backoff and jitter), tokens from `getToken()` at every handshake and on `token_expiring`, and the
// routing of server events to the open boards.
import { io, type Socket } from 'socket.io-client';

import { Board, type Link } from './board.js';
import { Emitter } from './emitter.js';
import type { Envelope } from './model.js';
import { defaultStorage } from './storage.js';
import type { ClientEvents, ClientOptions, ClientStatus, LiveboardError, OpenBoardOptions, Storage } from './types.js';

/** Persisted board events (libs/common/events.py BOARD_EVENT_TYPES, plus the v2 column_deleted). */
export const BOARD_EVENT_TYPES = new Set([
  'board_created',
  'board_updated',
  'board_deleted',
  'column_created',
  'column_updated',
  'column_deleted',
  'column_reordered',
  'column_rebalanced',
  'task_created',
  'task_moved',
  'task_updated',
  'task_deleted',
  'task_assigned',
  'task_commented',
]);

/** Refusals worth handing back to socket.io-client (it does not retry a refused handshake by itself). */
const RETRY_REFUSALS = new Set(['server_full', 'rate_limited', 'unavailable', 'unauthorized']);

/** The user a token belongs to (`sub`), to keep each user's queue apart; not a verification. */
function tokenSubject(token: string): string {
  try {
    const part = token.split('.')[1];
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json =
      typeof atob === 'function'
        ? decodeURIComponent(
            Array.from(atob(base64), (ch) => '%' + ch.charCodeAt(0).toString(16).padStart(2, '0')).join(''),
          )
        : '';
    const sub = JSON.parse(json).sub;
    return typeof sub === 'string' ? sub : 'anonymous';
  } catch {
    return 'anonymous';
  }
}

export class LiveboardClient extends Emitter<ClientEvents> {
  status: ClientStatus = 'connecting';
  /** Who the server says we are (from `connection_established`). */
  user: { id: string; email: string | null } | null = null;
  readonly storage: Storage;
  readonly socket: Socket;

  private boards = new Map<string, Board>();
  private opening = new Map<string, Promise<Board>>();
  private readonly options: ClientOptions;
  private manualRetry: ReturnType<typeof setTimeout> | null = null;
  private refusals = 0;
  private shutdownDelay: number | null = null;
  private readonly link: Link;
  private readonly onBrowserOffline = () => this.setStatus('offline');

  constructor(options: ClientOptions) {
    super();
    this.options = options;
    this.storage = options.storage ?? defaultStorage();
    const namespace = options.namespace ?? '/workspace';
    this.socket = io(options.url.replace(/\/+$/, '') + namespace, {
      // a function: socket.io-client calls it at every (re)connect, so each handshake has a current token
      auth: (callback: (data: object) => void) => {
        Promise.resolve()
          .then(() => options.getToken())
          .then(
            (token) => callback({ token }),
            (error) => {
              this.emit('error', { code: 'token', message: `getToken failed: ${String(error)}` });
              callback({});
            },
          );
      },
      reconnection: true,
      reconnectionAttempts: Infinity,
      reconnectionDelay: options.reconnectionDelay ?? 500,
      reconnectionDelayMax: options.reconnectionDelayMax ?? 10_000,
      randomizationFactor: options.randomizationFactor ?? 0.5,
      ...(options.transports ? { transports: options.transports } : {}),
      ...(options.socketOptions ?? {}),
    });
    const timeoutMs = options.ackTimeoutMs ?? 20_000;
    this.link = {
      connected: () => this.socket.connected,
      request: (event, payload, callback) => {
        if (!this.socket.connected) {
          // never let socket.io-client buffer it: it would be sent again at reconnect besides our replay
          callback(new Error('not connected'));
          return;
        }
        this.socket.timeout(timeoutMs).emit(event, payload, (error: Error | null, reply: unknown) =>
          callback(error, reply),
        );
      },
      send: (event, payload) => {
        if (this.socket.connected) this.socket.emit(event, payload);
      },
      storage: this.storage,
      gapDelayMs: options.gapDelayMs ?? 400,
      detach: (board) => {
        if (this.boards.get(board.id) === board) this.boards.delete(board.id);
        this.opening.delete(board.id);
      },
    };
    this.wire();
    const g = globalThis as { addEventListener?: (type: string, fn: () => void) => void };
    g.addEventListener?.('offline', this.onBrowserOffline);
  }

  private wire(): void {
    const socket = this.socket;
    socket.on('connect', () => {
      this.refusals = 0;
      this.shutdownDelay = null;
      this.setStatus('connected');
      for (const board of this.boards.values()) board.onConnect();
    });
    socket.on('disconnect', (reason) => {
      for (const board of this.boards.values()) board.onDisconnect();
      if (this.status === 'closed') return;
      this.setStatus('reconnecting');
      // socket.io-client reconnects by itself except after a server-side disconnect
      // (session_expired, server_shutdown, idle): hand it back once, after the server's delay
      if (reason === 'io server disconnect') this.retryHandshake(this.shutdownDelay ?? undefined);
    });
    socket.on('connect_error', (error: Error & { data?: { code?: string; message?: string } }) => {
      if (this.status === 'closed') return;
      this.setStatus('offline');
      for (const board of this.boards.values()) board.offlineOpen(true);
      if (!socket.active) {
        // refused by the server (err.data.code): socket.io-client stops here
        const code = error.data?.code ?? 'unavailable';
        this.emit('error', { code, message: error.data?.message ?? error.message });
        if (RETRY_REFUSALS.has(code)) this.retryHandshake();
      }
    });
    socket.io.on('reconnect_error', () => {
      if (this.status !== 'closed') this.setStatus('offline');
      for (const board of this.boards.values()) board.offlineOpen(true);
    });

    socket.on('connection_established', (data: { user_id: string; email: string | null; organizations: unknown[] }) => {
      this.user = { id: data.user_id, email: data.email ?? null };
      this.emit('connected', data);
    });
    socket.on('token_expiring', () => void this.refreshToken());
    socket.on('server_shutdown', (data: { reconnect_after_ms?: number }) => {
      this.shutdownDelay = typeof data?.reconnect_after_ms === 'number' ? data.reconnect_after_ms : null;
    });
    socket.on('session_expired', (data: { reason?: string }) => {
      this.emit('error', { code: 'session_expired', message: String(data?.reason ?? 'session expired') });
    });
    socket.onAny((event: string, payload: Record<string, any>) => {
      const board = payload && typeof payload === 'object' ? this.boards.get(payload.board_id) : undefined;
      if (!board) return;
      if (BOARD_EVENT_TYPES.has(event)) board.onEvent(payload as Envelope);
      else if (event === 'resync_required') board.onResyncRequired();
      else if (event === 'task_conflict') board.onConflict(payload);
      else if (event === 'board_access_revoked') board.onAccessRevoked();
      else if (event === 'user_presence') board.onPresence(payload);
      else if (event === 'user_typing') board.onTyping(payload);
      else if (event === 'user_cursor') board.onCursor(payload);
    });
  }

  /** One handshake attempt after a jittered delay, growing like socket.io-client's own backoff. */
  private retryHandshake(delayMs?: number): void {
    if (this.manualRetry || this.status === 'closed') return;
    const base = this.options.reconnectionDelay ?? 500;
    const max = this.options.reconnectionDelayMax ?? 10_000;
    const jitter = this.options.randomizationFactor ?? 0.5;
    const delay =
      delayMs ?? Math.min(max, base * 2 ** Math.min(this.refusals++, 10)) * (1 - jitter + 2 * jitter * Math.random());
    this.manualRetry = setTimeout(() => {
      this.manualRetry = null;
      if (this.status !== 'closed' && !this.socket.connected && !this.socket.active) this.socket.connect();
    }, delay);
  }

  /** `token_expiring`: a new token from `getToken()`, sent as `refresh_token` on the live socket. */
  async refreshToken(): Promise<void> {
    let token: string;
    try {
      token = await this.options.getToken();
    } catch (error) {
      this.emit('error', { code: 'token', message: `getToken failed: ${String(error)}` });
      return;
    }
    if (!this.socket.connected) return; // the next handshake uses getToken() anyway
    this.socket.timeout(10_000).emit('refresh_token', { token }, (error: Error | null, reply: any) => {
      if (error) return;
      if (!reply?.ok) this.emit('error', (reply?.error ?? { code: 'internal', message: 'refresh failed' }) as LiveboardError);
    });
  }

  private setStatus(status: ClientStatus): void {
    if (this.status === status || this.status === 'closed') return;
    this.status = status;
    this.emit('status', status);
  }

  /**
   * A board's live state. Resolves once joined, or at once with the stored state when the client
   * is offline and this board was opened here before. Rejects with `{code, message}` when the
   * server refuses the join (`forbidden`, `not_found`, ...).
   */
  async openBoard(options: OpenBoardOptions): Promise<Board> {
    if (this.status === 'closed') throw { code: 'closed', message: 'the client is closed' } satisfies LiveboardError;
    const existing = this.opening.get(options.boardId);
    if (existing) return existing;
    const opening = (async () => {
      const token = await this.options.getToken();
      const key = `liveboard:${tokenSubject(token)}:${options.boardId}`;
      const board = new Board(this.link, options, key);
      this.boards.set(board.id, board);
      return board.start(() => this.status === 'offline' || this.status === 'reconnecting');
    })();
    this.opening.set(options.boardId, opening);
    opening.catch(() => this.opening.delete(options.boardId));
    return opening;
  }

  /** Close every board and the socket; stored queues stay for the next client. */
  close(): void {
    if (this.status === 'closed') return;
    for (const board of [...this.boards.values()]) board.close();
    this.status = 'closed';
    this.emit('status', 'closed');
    if (this.manualRetry) clearTimeout(this.manualRetry);
    const g = globalThis as { removeEventListener?: (type: string, fn: () => void) => void };
    g.removeEventListener?.('offline', this.onBrowserOffline);
    this.socket.close();
  }
}

export function createClient(options: ClientOptions): LiveboardClient {
  return new LiveboardClient(options);
}
