// One open board: confirmed server state in `seq` order, optimistic pending operations on top,
// the offline queue in storage, and exactly-once delivery through `client_op_id`.
import { Emitter } from './emitter.js';
import { Confirmed, derive, type Envelope } from './model.js';
import type {
  BoardChanges,
  BoardEvents,
  BoardState,
  BoardStatus,
  CardChanges,
  ChangeCause,
  ColumnChanges,
  LiveboardError,
  MutationResult,
  MutationType,
  OpenBoardOptions,
  PendingOperation,
  PresenceMember,
  Storage,
  StoredOperation,
} from './types.js';

/** What a board needs from its client (kept small so the board can be reasoned about alone). */
export interface Link {
  connected(): boolean;
  /** Emit with an ack; `callback(error)` on timeout or disconnect. */
  request(event: string, payload: unknown, callback: (error: Error | null, reply?: any) => void): void;
  send(event: string, payload: unknown): void;
  storage: Storage;
  gapDelayMs: number;
  detach(board: Board): void;
}

interface Operation extends StoredOperation {
  resolve?: (result: MutationResult) => void;
  reject?: (error: LiveboardError) => void;
  settled?: boolean;
  retries: number;
  /** Sends so far: only the latest send's answer counts. */
  attempt?: number;
  conflictReported?: boolean;
}

/** Codes after which the same operation is simply sent again later (same `client_op_id`). */
const TRANSIENT = new Set(['unavailable', 'rate_limited', 'internal', 'unauthorized']);

function isTransient(error: LiveboardError): boolean {
  if (TRANSIENT.has(error.code)) return true;
  // boards: the client_op_id is in use by an unfinished request (a replay racing its original)
  return error.code === 'conflict' && (error as { reason?: string }).reason === 'op_in_progress';
}

function newOpId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (ch) => {
    const r = (Math.random() * 16) | 0;
    return (ch === 'x' ? r : (r & 3) | 8).toString(16);
  });
}

export const newId = newOpId;

export class Board extends Emitter<BoardEvents> {
  readonly id: string;
  readonly organizationId: string;
  readonly divisionId: string | null;
  /** The join ack's `can_write` (false for viewers; their edits are refused by the server). */
  canWrite = false;
  presence: PresenceMember[] = [];
  status: BoardStatus = 'offline';
  closed = false;

  private confirmedModel = new Confirmed();
  private ops: Operation[] = [];
  private buffer = new Map<number, Envelope>();
  private joining = false;
  private joinGeneration = 0;
  private gapTimer: ReturnType<typeof setTimeout> | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private cachedState: BoardState | null = null;
  private cachedConfirmed: BoardState | null = null;
  private saving: Promise<void> = Promise.resolve();
  private saveQueued = false;
  private opened: { resolve: (board: Board) => void; reject: (error: LiveboardError) => void } | null = null;

  constructor(
    private readonly link: Link,
    options: OpenBoardOptions,
    private readonly storageKey: string,
  ) {
    super();
    this.id = options.boardId;
    this.organizationId = options.organizationId;
    this.divisionId = options.divisionId ?? null;
  }

  // ------------------------------------------------------------------ public state

  /** The confirmed state with pending operations applied on top. */
  get state(): BoardState {
    return (this.cachedState ??= derive(this.confirmedModel, this.ops));
  }

  /** The last server-confirmed state. */
  get confirmed(): BoardState {
    return (this.cachedConfirmed ??= derive(this.confirmedModel, []));
  }

  get pending(): PendingOperation[] {
    return this.ops.map(({ clientOpId, type, payload, status }) => ({
      clientOpId,
      type,
      payload: structuredClone(payload),
      status,
    }));
  }

  // ------------------------------------------------------------------ mutations

  /** Move a card to `position` (0-based) in `toColumnId`. */
  moveCard(
    taskId: string,
    toColumnId: string,
    position: number,
    options: { expectedVersion?: number } = {},
  ): Promise<MutationResult> {
    const card = this.state.cards.find((c) => c.id === taskId);
    return this.mutate('task_moved', {
      task_id: taskId,
      ...(card ? { from_column_id: card.column_id } : {}),
      to_column_id: toColumnId,
      position,
      ...(options.expectedVersion !== undefined ? { expected_version: options.expectedVersion } : {}),
    });
  }

  /** A new card; its id is chosen here (a UUID) unless given, so it is the same before and after the ack. */
  createCard(
    columnId: string,
    title: string,
    options: { description?: string; position?: number; id?: string } = {},
  ): Promise<MutationResult> {
    return this.mutate('task_created', {
      id: options.id ?? newOpId(),
      column_id: columnId,
      title,
      ...(options.description !== undefined ? { description: options.description } : {}),
      ...(options.position !== undefined ? { position: options.position } : {}),
    });
  }

  updateCard(taskId: string, changes: CardChanges, options: { expectedVersion?: number } = {}): Promise<MutationResult> {
    return this.mutate('task_updated', {
      task_id: taskId,
      changes,
      ...(options.expectedVersion !== undefined ? { expected_version: options.expectedVersion } : {}),
    });
  }

  deleteCard(taskId: string): Promise<MutationResult> {
    return this.mutate('task_deleted', { task_id: taskId });
  }

  assign(taskId: string, assigneeIds: string[]): Promise<MutationResult> {
    return this.mutate('task_assigned', { task_id: taskId, assignee_ids: [...assigneeIds] });
  }

  comment(taskId: string, body: string): Promise<MutationResult> {
    return this.mutate('task_commented', { task_id: taskId, body });
  }

  updateBoard(changes: BoardChanges): Promise<MutationResult> {
    return this.mutate('board_updated', { changes });
  }

  updateColumn(columnId: string, changes: ColumnChanges): Promise<MutationResult> {
    return this.mutate('column_updated', { column_id: columnId, changes });
  }

  /** The new order of all the board's columns. */
  reorderColumns(columnIds: string[]): Promise<MutationResult> {
    return this.mutate('column_reordered', { column_ids: [...columnIds] });
  }

  // ------------------------------------------------------------------ ephemeral

  setTyping(taskId: string | null, isTyping: boolean): void {
    if (this.status === 'live') this.link.send('user_typing', { board_id: this.id, task_id: taskId, is_typing: isTyping });
  }

  setCursor(x: number, y: number, taskId?: string | null): void {
    if (this.status === 'live') {
      this.link.send('user_cursor', { board_id: this.id, x, y, ...(taskId ? { task_id: taskId } : {}) });
    }
  }

  setPresence(status: 'online' | 'away'): void {
    if (this.status === 'live') this.link.send('user_presence', { board_id: this.id, status });
  }

  /** Leave the board. Operations not yet confirmed stay in storage and are sent when it is opened again. */
  close(): void {
    this.shut('closed');
    if (this.link.connected()) this.link.send('leave_board', { board_id: this.id });
  }

  // ------------------------------------------------------------------ internals: opening

  /** Load the stored queue (and snapshot), then join when connected. */
  async start(offline: () => boolean): Promise<Board> {
    const stored = await this.link.storage.load(this.storageKey);
    if (stored) {
      if (stored.snapshot) this.confirmedModel.load(stored.snapshot);
      this.ops = (stored.pending ?? []).map((op) => ({
        ...op,
        status: op.ackSeq !== undefined ? 'sent' : 'queued',
        retries: 0,
      }));
    }
    const ready = new Promise<Board>((resolve, reject) => (this.opened = { resolve, reject }));
    if (this.link.connected()) this.join('since');
    else this.offlineOpen(offline());
    return ready;
  }

  /** Not connected: with a stored snapshot the board opens offline at once. */
  offlineOpen(isOffline: boolean): void {
    if (isOffline && this.opened && this.confirmedModel.loaded) {
      this.setStatus('offline');
      this.opened.resolve(this);
      this.opened = null;
    }
  }

  // ------------------------------------------------------------------ internals: connection

  onConnect(): void {
    if (!this.closed) this.join('since');
  }

  onDisconnect(): void {
    if (this.closed) return;
    this.joining = false;
    this.joinGeneration++;
    this.clearGapTimer();
    for (const op of this.ops) if (op.status === 'sent' && op.ackSeq === undefined) op.status = 'queued';
    this.setStatus('offline');
  }

  /** (Re-)join: `since` continues from the confirmed seq (catch-up), `snapshot` asks for a fresh one. */
  private join(mode: 'since' | 'snapshot'): void {
    if (this.closed || !this.link.connected()) return;
    const generation = ++this.joinGeneration;
    this.joining = true;
    this.clearGapTimer();
    this.setStatus(mode === 'snapshot' ? 'resyncing' : 'catching_up');
    const payload: Record<string, unknown> = { board_id: this.id, organization_id: this.organizationId };
    if (this.divisionId) payload.division_id = this.divisionId;
    if (mode === 'since' && this.confirmedModel.loaded) payload.since_seq = this.confirmedModel.seq;
    this.link.request('join_board', payload, (error, reply) => {
      if (generation !== this.joinGeneration || this.closed) return;
      if (error) {
        // timed out while still connected: try again; a disconnect re-joins on connect
        if (this.link.connected()) setTimeout(() => generation === this.joinGeneration && this.join(mode), 1000);
        return;
      }
      if (!reply?.ok) {
        const failure = (reply?.error ?? { code: 'internal', message: 'no answer' }) as LiveboardError;
        this.joining = false;
        if (isTransient(failure) && failure.code !== 'unauthorized') {
          setTimeout(() => generation === this.joinGeneration && this.join(mode), 1000);
          return;
        }
        if (this.opened) {
          this.opened.reject(failure);
          this.opened = null;
          this.shut('closed');
        } else this.emit('error', failure);
        return;
      }
      this.joined(reply.data, mode);
    });
  }

  private joined(data: Record<string, any>, mode: 'since' | 'snapshot'): void {
    this.joining = false;
    this.canWrite = Boolean(data.can_write);
    this.setPresenceList(data.presence ?? []);
    let cause: ChangeCause = 'remote';
    if (data.snapshot) {
      this.confirmedModel.load(data.snapshot);
      cause = 'resync';
    } else {
      for (const envelope of (data.events ?? []) as Envelope[]) {
        if (Number.isInteger(envelope.seq) && (envelope.seq as number) === this.confirmedModel.seq + 1) {
          this.applyRemote(envelope);
        }
      }
      if (this.confirmedModel.seq !== data.seq) {
        this.join('snapshot'); // the events did not bring us to the join's seq: take a snapshot
        return;
      }
    }
    if (mode === 'snapshot') cause = 'resync';
    this.drain(false);
    this.settleAcked();
    this.changed(cause);
    this.setStatus('live');
    this.persist();
    if (this.opened) {
      this.opened.resolve(this);
      this.opened = null;
    }
    this.flush();
  }

  // ------------------------------------------------------------------ internals: events

  /** A persisted broadcast of this board. */
  onEvent(envelope: Envelope): void {
    if (this.closed || !Number.isInteger(envelope.seq)) return;
    const seq = envelope.seq as number;
    if (this.joining) {
      this.buffer.set(seq, envelope);
      return;
    }
    if (seq <= this.confirmedModel.seq) return; // a duplicate
    this.buffer.set(seq, envelope);
    this.drain(true);
  }

  /** Apply buffered events that continue the confirmed seq; a hole that stays → re-join with since_seq. */
  private drain(notify: boolean): void {
    let applied = false;
    for (const seq of [...this.buffer.keys()]) if (seq <= this.confirmedModel.seq) this.buffer.delete(seq);
    while (this.buffer.has(this.confirmedModel.seq + 1)) {
      const next = this.buffer.get(this.confirmedModel.seq + 1)!;
      this.buffer.delete(next.seq as number);
      this.applyRemote(next);
      applied = true;
    }
    if (this.buffer.size === 0) this.clearGapTimer();
    else if (!this.gapTimer) {
      this.gapTimer = setTimeout(() => {
        this.gapTimer = null;
        if (this.buffer.size > 0 && !this.joining && !this.closed) this.join('since');
      }, this.link.gapDelayMs);
    }
    if (applied && notify) {
      this.settleAcked();
      this.changed('remote');
      this.persist();
    }
  }

  private applyRemote(envelope: Envelope): void {
    this.confirmedModel.apply(envelope);
    // Our own operation's echo: its effect is now in the confirmed state, so it stops being pending.
    const own = envelope.correlation_id
      ? this.ops.findIndex((op) => op.clientOpId === envelope.correlation_id && op.type === envelope.event_type)
      : -1;
    if (own >= 0) {
      const [op] = this.ops.splice(own, 1);
      const result = { ...envelope.data, seq: envelope.seq as number, event_id: String(envelope.event_id) };
      this.settle(op, result);
      this.reportConflict(op, result);
    }
    if (envelope.event_type === 'board_deleted') {
      queueMicrotask(() => this.shut('deleted'));
    }
  }

  /** Acked operations whose event the confirmed state already includes. */
  private settleAcked(): void {
    this.ops = this.ops.filter((op) => op.ackSeq === undefined || op.ackSeq > this.confirmedModel.seq);
  }

  onResyncRequired(): void {
    if (!this.closed && this.link.connected()) this.join('snapshot');
  }

  onConflict(data: Record<string, any>): void {
    if (this.ops.some((op) => op.clientOpId === data.client_op_id) || this.recentlySettled.has(data.client_op_id)) {
      return; // reported from the ack already
    }
    this.emit('conflict', { op: null, conflict: data.conflict, task: data.task ?? null });
  }

  onAccessRevoked(): void {
    this.shut('access_revoked');
  }

  onPresence(envelope: Record<string, any>): void {
    const userId = envelope.user_id ?? envelope.data?.user_id;
    const status = envelope.status ?? envelope.data?.status;
    if (!userId) return;
    const others = this.presence.filter((member) => member.user_id !== userId);
    this.presence =
      status === 'offline'
        ? others
        : [...others, { user_id: userId, email: envelope.email ?? envelope.data?.email ?? null, status }];
    this.emit('presence', this.presence);
  }

  onTyping(envelope: Record<string, any>): void {
    this.emit('typing', envelope.data);
  }

  onCursor(envelope: Record<string, any>): void {
    this.emit('cursor', envelope.data);
  }

  private setPresenceList(list: PresenceMember[]): void {
    const byUser = new Map<string, PresenceMember>();
    for (const member of list) if (member?.user_id) byUser.set(member.user_id, member);
    this.presence = [...byUser.values()];
    this.emit('presence', this.presence);
  }

  // ------------------------------------------------------------------ internals: operations

  private recentlySettled = new Set<string>();

  private mutate(type: MutationType, fields: Record<string, unknown>): Promise<MutationResult> {
    if (this.closed) return Promise.reject({ code: 'closed', message: 'the board is closed' });
    const op: Operation = {
      clientOpId: newOpId(),
      type,
      payload: { board_id: this.id, ...fields },
      status: 'queued',
      createdAt: Date.now(),
      retries: 0,
    };
    const result = new Promise<MutationResult>((resolve, reject) => {
      op.resolve = resolve;
      op.reject = reject;
    });
    result.catch(() => {}); // refusals are also reported as `rejected`: an unawaited one is not an error
    this.ops.push(op);
    this.changed('local');
    this.persist().then(() => this.flush());
    return result;
  }

  /** Send every queued operation, in order, when the board is live. */
  private flush(): void {
    if (this.status !== 'live' || this.closed || !this.link.connected()) return;
    for (const op of this.ops) {
      if (op.status !== 'queued') continue;
      op.status = 'sent';
      const attempt = (op.attempt = (op.attempt ?? 0) + 1);
      // correlation_id = client_op_id: the broadcast carries it, so our own echo is recognised
      const event = { ...op.payload, client_op_id: op.clientOpId, correlation_id: op.clientOpId };
      this.link.request(op.type, event, (error, reply) => {
        if (op.attempt === attempt || (!error && reply?.ok)) this.onAck(op, error, reply);
      });
    }
  }

  private onAck(op: Operation, error: Error | null, reply: any): void {
    if (!this.ops.includes(op)) {
      if (reply?.ok) this.reportConflict(op, reply.data); // settled by its echo already
      return;
    }
    if (error) {
      // no answer (timeout, or the connection dropped): its fate is unknown, so it is sent again
      // with the same client_op_id, which the server applies at most once
      if (op.ackSeq === undefined) op.status = 'queued';
      if (this.link.connected()) this.retryLater();
      return;
    }
    if (reply?.ok) {
      const data = reply.data as MutationResult;
      op.ackSeq = data.seq;
      if (data.conflict && op.type === 'task_moved') {
        // follow the server's answer until its event arrives
        op.payload = { ...op.payload, to_column_id: data.to_column_id, position: data.position };
      }
      this.settle(op, data);
      this.reportConflict(op, data);
      if (data.conflict || (Number.isInteger(data.seq) && data.seq <= this.confirmedModel.seq)) {
        this.settleAcked();
        this.changed('remote');
      }
      this.persist();
      return;
    }
    const failure = (reply?.error ?? { code: 'internal', message: 'no answer' }) as LiveboardError;
    if (isTransient(failure)) {
      op.status = 'queued';
      this.retryLater(++op.retries);
      return;
    }
    this.ops.splice(this.ops.indexOf(op), 1);
    this.changed('rollback');
    this.persist();
    this.emit('rejected', { op: this.publicOp(op), error: failure });
    if (!op.settled) {
      op.settled = true;
      op.reject?.(failure);
    }
  }

  private settle(op: Operation, result: MutationResult): void {
    if (op.settled) return;
    op.settled = true;
    this.recentlySettled.add(op.clientOpId);
    if (this.recentlySettled.size > 500) this.recentlySettled.delete(this.recentlySettled.values().next().value!);
    op.resolve?.(result);
  }

  /** The server resolved the operation differently (ack or echo, whichever comes first). */
  private reportConflict(op: Operation, result: MutationResult): void {
    if (!result?.conflict || op.conflictReported) return;
    op.conflictReported = true;
    this.emit('conflict', { op: this.publicOp(op), conflict: result.conflict, task: (result.task as never) ?? null });
  }

  private retryLater(attempt = 1): void {
    if (this.retryTimer) return;
    const delay = Math.min(10_000, 250 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random());
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.flush();
    }, delay);
  }

  private publicOp(op: Operation): PendingOperation {
    return { clientOpId: op.clientOpId, type: op.type, payload: structuredClone(op.payload), status: op.status };
  }

  // ------------------------------------------------------------------ internals: bookkeeping

  private changed(cause: ChangeCause): void {
    this.cachedState = null;
    this.cachedConfirmed = null;
    this.emit('change', { state: this.state, cause });
  }

  private setStatus(status: BoardStatus): void {
    if (this.status === status) return;
    this.status = status;
    this.emit('status', status);
  }

  private clearGapTimer(): void {
    if (this.gapTimer) clearTimeout(this.gapTimer);
    this.gapTimer = null;
  }

  /** Write the queue and the confirmed snapshot; writes happen one after another, latest state last. */
  persist(): Promise<void> {
    if (this.saveQueued) return this.saving;
    this.saveQueued = true;
    this.saving = this.saving.then(async () => {
      this.saveQueued = false;
      const pending: StoredOperation[] = this.ops.map((op) => ({
        clientOpId: op.clientOpId,
        type: op.type,
        payload: op.payload,
        status: op.status,
        createdAt: op.createdAt,
        ...(op.ackSeq !== undefined ? { ackSeq: op.ackSeq } : {}),
      }));
      const snapshot = this.confirmedModel.loaded ? this.confirmedModel.snapshot() : null;
      try {
        await this.link.storage.save(this.storageKey, { pending, snapshot });
      } catch (error) {
        this.emit('error', { code: 'storage', message: String(error) });
      }
    });
    return this.saving;
  }

  private shut(reason: 'deleted' | 'access_revoked' | 'closed'): void {
    if (this.closed) return;
    this.closed = true;
    this.joinGeneration++;
    this.clearGapTimer();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.persist();
    this.link.detach(this);
    this.setStatus('offline');
    this.emit('closed', { reason });
  }
}
