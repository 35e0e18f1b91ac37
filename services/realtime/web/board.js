// The board as the server last said it was, plus the moves this page is still waiting on.
//
// Why card order comes from `rank` and not from `position`: every card event carries the card's
// fractional `rank` (the key the server orders by, compared byte-wise like Postgres' COLLATE "C"),
// so sorting by it reproduces the server's order exactly, including after a `column_rebalanced`
// (which changes keys, not positions). Integer positions are what we send; ranks are what we trust.
//
// Nothing here touches the DOM, so it can be reasoned about (and tested) on its own.

/** Byte-wise order of ASCII rank keys, with the id as a tie-break so the order is total. */
export function byRank(a, b) {
  if (a.rank !== b.rank) return a.rank < b.rank ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

const ACTOR_FIELDS = ['moved_by', 'created_by', 'updated_by', 'assigned_by', 'deleted_by', 'author'];

export class BoardState {
  constructor() {
    this.clear();
  }

  clear() {
    this.board = null;
    this.deleted = false;
    this.columns = new Map();
    this.cards = new Map();
    this.comments = new Map(); // task_id -> [comment] seen since this page opened the board
    this.seq = 0;
    /** task_id -> {to_column_id, position, opId, waitSeq}: optimistic moves not yet confirmed. */
    this.pendingMoves = new Map();
  }

  /** Replace everything with a snapshot `{board, columns, cards, seq}`. */
  load(snapshot) {
    const comments = this.comments;
    const pending = this.pendingMoves;
    this.clear();
    this.board = snapshot.board;
    for (const column of snapshot.columns) this.columns.set(column.id, column);
    for (const card of snapshot.cards) this.cards.set(card.id, card);
    this.seq = snapshot.seq;
    // Comments are not part of a snapshot: keep what we saw for cards that still exist.
    for (const [taskId, list] of comments) if (this.cards.has(taskId)) this.comments.set(taskId, list);
    for (const [taskId, move] of pending) {
      const confirmed = move.waitSeq !== undefined && move.waitSeq <= this.seq;
      if (this.cards.has(taskId) && !confirmed) this.pendingMoves.set(taskId, move);
    }
  }

  /** People mentioned by an event (`{id, email}` actors), for avatars and the assignee list. */
  static actorsOf(envelope) {
    const data = envelope.data || {};
    return ACTOR_FIELDS.map((field) => data[field]).filter((actor) => actor && actor.id);
  }

  /** Apply one persisted event (the caller guarantees seq order). */
  apply(envelope) {
    const data = envelope.data || {};
    switch (envelope.event_type) {
      case 'board_created':
        this.board = data.board;
        for (const column of data.columns || []) this.columns.set(column.id, column);
        for (const card of data.cards || []) this.cards.set(card.id, card);
        break;
      case 'board_updated':
        this.board = data.board;
        break;
      case 'board_deleted':
        this.deleted = true;
        break;
      case 'column_created':
        this.columns.set(data.column.id, data.column);
        break;
      case 'column_updated':
        this.columns.set(data.column.id, data.column);
        break;
      case 'column_reordered':
        for (const { id, rank, position } of data.columns || []) {
          const column = this.columns.get(id);
          if (column) this.columns.set(id, { ...column, rank, position });
        }
        break;
      case 'column_rebalanced':
        for (const { id, rank } of data.cards || []) {
          const card = this.cards.get(id);
          if (card) this.cards.set(id, { ...card, rank });
        }
        break;
      case 'task_created':
      case 'task_moved':
      case 'task_updated':
      case 'task_assigned':
        if (data.task) this.cards.set(data.task.id, data.task);
        break;
      case 'task_deleted':
        this.cards.delete(data.task_id);
        this.comments.delete(data.task_id);
        this.pendingMoves.delete(data.task_id);
        break;
      case 'task_commented': {
        const list = this.comments.get(data.task_id) || [];
        if (data.comment && !list.some((c) => c.id === data.comment.id)) list.push(data.comment);
        this.comments.set(data.task_id, list);
        break;
      }
      default:
        break; // an event type this page does not know yet changes nothing it shows
    }
    if (Number.isInteger(envelope.seq)) this.seq = envelope.seq;
    for (const [taskId, move] of this.pendingMoves) {
      if (move.waitSeq !== undefined && this.seq >= move.waitSeq) this.pendingMoves.delete(taskId);
    }
  }

  columnsInOrder() {
    return [...this.columns.values()].sort(byRank);
  }

  /** column_id -> cards in display order: the server's order with our unconfirmed moves on top. */
  layout() {
    const lists = new Map();
    for (const column of this.columnsInOrder()) lists.set(column.id, []);
    for (const card of this.cards.values()) {
      if (!lists.has(card.column_id)) lists.set(card.column_id, []);
      lists.get(card.column_id).push(card);
    }
    for (const list of lists.values()) list.sort(byRank);
    for (const [taskId, move] of this.pendingMoves) {
      const card = this.cards.get(taskId);
      const target = lists.get(move.to_column_id);
      if (!card || !target) continue;
      const source = lists.get(card.column_id);
      const at = source.findIndex((c) => c.id === taskId);
      if (at >= 0) source.splice(at, 1);
      target.splice(Math.min(move.position, target.length), 0, card);
    }
    return lists;
  }

  /** Where a card is shown now: `{column_id, index}` (or null). */
  whereIs(taskId, layout = this.layout()) {
    for (const [columnId, list] of layout) {
      const index = list.findIndex((c) => c.id === taskId);
      if (index >= 0) return { column_id: columnId, index };
    }
    return null;
  }

  /** Show a move at once; `settleMove` ends it when the server's answer is known. */
  beginMove(taskId, toColumnId, position, opId) {
    this.pendingMoves.set(taskId, { to_column_id: toColumnId, position, opId });
  }

  /**
   * The server answered move `opId`: on success the overlay stays until the broadcast with that
   * seq has been applied (so the card does not jump back and forth), on failure it goes now.
   */
  settleMove(taskId, opId, seq) {
    const move = this.pendingMoves.get(taskId);
    if (!move || move.opId !== opId) return;
    if (seq === undefined || this.seq >= seq) this.pendingMoves.delete(taskId);
    else move.waitSeq = seq;
  }
}

/**
 * Persisted events in strict `seq` order: duplicates dropped, early ones held back, and a gap
 * that does not fill itself reported (the page then re-joins with `since_seq`).
 *
 * The server promises gapless, in-order delivery on a socket; this is what makes the page
 * correct anyway around a (re-)join, where broadcasts and the join answer can cross.
 */
export class Sequencer {
  constructor({ apply, onGap, gapDelayMs = 400 }) {
    this.applyEvent = apply;
    this.onGap = onGap;
    this.gapDelayMs = gapDelayMs;
    this.pending = new Map();
    this.seq = 0;
    this.holding = true; // until the join answer sets the starting seq
    this.gapTimer = null;
  }

  /** Hold every event until `start` (a join is in flight). */
  hold() {
    this.holding = true;
    this.clearGapTimer();
  }

  /** The join answer arrived: continue from `seq`, applying what was held and is newer. */
  start(seq) {
    this.seq = seq;
    this.holding = false;
    return this.drain();
  }

  push(envelope) {
    if (!Number.isInteger(envelope.seq)) return false;
    if (envelope.seq <= this.seq && !this.holding) return false; // a duplicate
    this.pending.set(envelope.seq, envelope);
    return this.holding ? false : this.drain();
  }

  drain() {
    let applied = false;
    for (const seq of [...this.pending.keys()]) if (seq <= this.seq) this.pending.delete(seq);
    while (this.pending.has(this.seq + 1)) {
      const next = this.pending.get(this.seq + 1);
      this.pending.delete(this.seq + 1);
      this.seq = next.seq;
      this.applyEvent(next);
      applied = true;
    }
    if (this.pending.size === 0) this.clearGapTimer();
    else if (!this.gapTimer) {
      this.gapTimer = setTimeout(() => {
        this.gapTimer = null;
        if (this.pending.size > 0 && !this.holding) this.onGap(this.seq);
      }, this.gapDelayMs);
    }
    return applied;
  }

  clearGapTimer() {
    if (this.gapTimer) clearTimeout(this.gapTimer);
    this.gapTimer = null;
  }
}
