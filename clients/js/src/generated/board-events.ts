/* eslint-disable */
// Generated from schemas/board-events.schema.json by scripts/gen-types.mjs (json-schema-to-typescript).
// Do not edit: change the pydantic models, then run `make sdk-types`.

export type BoardEventData =
  | Actor
  | Board
  | BoardCreated
  | BoardDeleted
  | BoardUpdated
  | Card
  | CardRank
  | Column
  | ColumnCreated
  | ColumnRank
  | ColumnRebalanced
  | ColumnReordered
  | ColumnUpdated
  | Comment
  | Conflict
  | TaskAssigned
  | TaskCommented
  | TaskCreated
  | TaskDeleted
  | TaskMoved
  | TaskUpdated;

export interface Actor {
  email: string | null;
  id: string;
  [k: string]: unknown;
}
export interface Board {
  created_at: string;
  created_by: string;
  division_id: string | null;
  id: string;
  name: string;
  organization_id: string;
  updated_at: string;
  [k: string]: unknown;
}
export interface BoardCreated {
  board: Board;
  cards: Card[];
  columns: Column[];
  [k: string]: unknown;
}
export interface Card {
  assignee_ids: string[];
  board_id: string;
  column_id: string;
  created_at: string;
  created_by: string;
  description: string;
  due_date: string | null;
  id: string;
  labels: string[];
  position: number;
  rank: string;
  title: string;
  updated_at: string;
  version: number;
  [k: string]: unknown;
}
export interface Column {
  board_id: string;
  created_at: string;
  id: string;
  name: string;
  position: number;
  rank: string;
  updated_at: string;
  version: number;
  wip_limit: number | null;
  [k: string]: unknown;
}
export interface BoardDeleted {
  board_id: string;
  deleted_by: Actor;
  [k: string]: unknown;
}
export interface BoardUpdated {
  board: Board;
  board_id: string;
  changes: {
    [k: string]: unknown;
  };
  [k: string]: unknown;
}
export interface CardRank {
  id: string;
  rank: string;
  [k: string]: unknown;
}
export interface ColumnCreated {
  column: Column;
  [k: string]: unknown;
}
export interface ColumnRank {
  id: string;
  position: number;
  rank: string;
  [k: string]: unknown;
}
export interface ColumnRebalanced {
  cards: CardRank[];
  column_id: string;
  [k: string]: unknown;
}
export interface ColumnReordered {
  column_ids: string[];
  columns: ColumnRank[];
  [k: string]: unknown;
}
export interface ColumnUpdated {
  changes: {
    [k: string]: unknown;
  };
  column: Column;
  column_id: string;
  [k: string]: unknown;
}
export interface Comment {
  author_id: string;
  body: string;
  created_at: string;
  id: string;
  task_id: string;
  [k: string]: unknown;
}
export interface Conflict {
  reason: string;
  reasons: string[];
  requested: {
    [k: string]: unknown;
  };
  resolved: {
    [k: string]: unknown;
  };
  [k: string]: unknown;
}
export interface TaskAssigned {
  assigned_by: Actor;
  assignee_ids: string[];
  task: Card;
  task_id: string;
  [k: string]: unknown;
}
export interface TaskCommented {
  author: Actor;
  comment: Comment;
  task_id: string;
  [k: string]: unknown;
}
export interface TaskCreated {
  conflict?: Conflict | null;
  created_by: Actor;
  task: Card;
  timestamp: string;
  [k: string]: unknown;
}
export interface TaskDeleted {
  column_id: string;
  deleted_by: Actor;
  task_id: string;
  [k: string]: unknown;
}
export interface TaskMoved {
  conflict?: Conflict | null;
  from_column_id: string;
  moved_by: Actor;
  position: number;
  task: Card;
  task_id: string;
  timestamp: string;
  to_column_id: string;
  [k: string]: unknown;
}
export interface TaskUpdated {
  changes: {
    [k: string]: unknown;
  };
  task: Card;
  task_id: string;
  updated_by: Actor;
  [k: string]: unknown;
}
