// The board as the server confirmed it, and the same with pending operations applied on top.
//
// Card and column order come from `rank`, the key the server orders by (compared byte-wise, like
// Postgres' COLLATE "C"): every card and column event carries it, so sorting by it reproduces the
// server's order exactly, also after a `column_rebalanced`. Integer positions are derived from that
// order (and are what mutations send).
import type { BoardRecord, BoardState, Card, Column, PendingOperation, Snapshot } from './types.js';

export interface Envelope {
  event_type: string;
  data: Record<string, unknown>;
  board_id?: string | null;
  seq?: number | null;
  event_id?: string;
  user_id?: string | null;
  timestamp?: string;
  correlation_id?: string | null;
}

interface Ranked {
  id: string;
  rank: string;
}

/** Byte-wise order of ASCII rank keys, the id breaking ties so the order is total. */
export function byRank(a: Ranked, b: Ranked): number {
  if (a.rank !== b.rank) return a.rank < b.rank ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export class Confirmed {
  board: BoardRecord | null = null;
  deleted = false;
  columns = new Map<string, Column>();
  cards = new Map<string, Card>();
  seq = 0;
  loaded = false;

  load(snapshot: Snapshot): void {
    this.board = snapshot.board ?? null;
    this.deleted = false;
    this.columns = new Map((snapshot.columns ?? []).map((column) => [column.id, column]));
    this.cards = new Map((snapshot.cards ?? []).map((card) => [card.id, card]));
    this.seq = snapshot.seq;
    this.loaded = true;
  }

  snapshot(): Snapshot {
    return { board: this.board, columns: [...this.columns.values()], cards: [...this.cards.values()], seq: this.seq };
  }

  /** One persisted event; the caller guarantees `seq` order. */
  apply(envelope: Envelope): void {
    const data = (envelope.data ?? {}) as Record<string, any>;
    switch (envelope.event_type) {
      case 'board_created':
        this.board = data.board ?? this.board;
        for (const column of data.columns ?? []) this.columns.set(column.id, column);
        for (const card of data.cards ?? []) this.cards.set(card.id, card);
        break;
      case 'board_updated':
        if (data.board) this.board = data.board;
        break;
      case 'board_deleted':
        this.deleted = true;
        break;
      case 'column_created':
      case 'column_updated':
        if (data.column) this.columns.set(data.column.id, data.column);
        break;
      case 'column_deleted':
        this.columns.delete(data.column_id);
        break;
      case 'column_reordered':
        for (const { id, rank, position } of data.columns ?? []) {
          const column = this.columns.get(id);
          if (column) this.columns.set(id, { ...column, rank, position });
        }
        break;
      case 'column_rebalanced':
        for (const { id, rank } of data.cards ?? []) {
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
        break;
      default:
        break; // comments and event types this version does not know change nothing it shows
    }
    if (Number.isInteger(envelope.seq)) this.seq = envelope.seq as number;
  }
}

const now = () => new Date().toISOString();

/** `confirmed` with `ops` applied in order, as the public `BoardState`. */
export function derive(confirmed: Confirmed, ops: readonly PendingOperation[]): BoardState {
  let board = confirmed.board;
  const columns = new Map(confirmed.columns);
  const cards = new Map(confirmed.cards);
  let columnOrder = [...columns.values()].sort(byRank).map((column) => column.id);
  const lists = new Map<string, string[]>(columnOrder.map((id) => [id, []]));
  for (const card of [...cards.values()].sort(byRank)) {
    if (!lists.has(card.column_id)) lists.set(card.column_id, []);
    lists.get(card.column_id)!.push(card.id);
  }
  const remove = (taskId: string, columnId: string) => {
    const list = lists.get(columnId);
    const at = list ? list.indexOf(taskId) : -1;
    if (at >= 0) list!.splice(at, 1);
  };
  const insert = (taskId: string, columnId: string, position: unknown) => {
    const list = lists.get(columnId)!;
    const at = typeof position === 'number' ? Math.max(0, Math.min(position, list.length)) : list.length;
    list.splice(at, 0, taskId);
  };

  for (const op of ops) {
    const p = op.payload as Record<string, any>;
    switch (op.type) {
      case 'task_created': {
        if (typeof p.id !== 'string' || cards.has(p.id) || !lists.has(p.column_id)) break;
        const at = now();
        cards.set(p.id, {
          id: p.id,
          board_id: String(p.board_id),
          column_id: p.column_id,
          position: 0,
          rank: '',
          title: p.title,
          description: p.description ?? '',
          due_date: p.due_date ?? null,
          labels: p.labels ?? [],
          assignee_ids: p.assignee_ids ?? [],
          version: 0,
          created_by: '',
          created_at: at,
          updated_at: at,
        });
        insert(p.id, p.column_id, p.position);
        break;
      }
      case 'task_moved': {
        const card = cards.get(p.task_id);
        if (!card || !lists.has(p.to_column_id)) break;
        remove(card.id, card.column_id);
        insert(card.id, p.to_column_id, p.position);
        cards.set(card.id, { ...card, column_id: p.to_column_id });
        break;
      }
      case 'task_updated': {
        const card = cards.get(p.task_id);
        if (card) cards.set(card.id, { ...card, ...(p.changes ?? {}) });
        break;
      }
      case 'task_deleted': {
        const card = cards.get(p.task_id);
        if (!card) break;
        remove(card.id, card.column_id);
        cards.delete(card.id);
        break;
      }
      case 'task_assigned': {
        const card = cards.get(p.task_id);
        if (card) cards.set(card.id, { ...card, assignee_ids: [...(p.assignee_ids ?? [])] });
        break;
      }
      case 'board_updated':
        if (board) board = { ...board, ...(p.changes ?? {}) };
        break;
      case 'column_updated': {
        const column = columns.get(p.column_id);
        if (column) columns.set(column.id, { ...column, ...(p.changes ?? {}) });
        break;
      }
      case 'column_reordered': {
        const wanted = (p.column_ids ?? []).filter((id: string) => columns.has(id));
        columnOrder = [...wanted, ...columnOrder.filter((id) => !wanted.includes(id))];
        break;
      }
      default:
        break; // task_commented: comments are not part of a board's state
    }
  }

  const outColumns: Column[] = columnOrder.map((id, position) => {
    const column = columns.get(id)!;
    return column.position === position ? column : { ...column, position };
  });
  const outCards: Card[] = [];
  const placed = (columnId: string) => {
    (lists.get(columnId) ?? []).forEach((taskId, position) => {
      const card = cards.get(taskId)!;
      outCards.push(card.position === position && card.column_id === columnId ? card : { ...card, position });
    });
  };
  for (const id of columnOrder) placed(id);
  for (const id of lists.keys()) if (!columns.has(id)) placed(id); // cards of a column we do not know (yet)
  return { board, columns: outColumns, cards: outCards, seq: confirmed.seq, deleted: confirmed.deleted };
}
