/* eslint-disable */
// Generated from schemas/boards-payloads.schema.json by scripts/gen-types.mjs (json-schema-to-typescript).
// Do not edit: change the pydantic models, then run `make sdk-types`.

export type BoardsPayload =
  | AssignTask
  | BoardChanges
  | BoardListQuery
  | BoardRef
  | BoardUpdatedMessage
  | CardChanges
  | CardPatch
  | Changes
  | ColumnChanges
  | ColumnReorderedMessage
  | ColumnUpdatedMessage
  | CommentTask
  | CreateBoard
  | CreateColumn
  | CreateTask
  | EventsQuery
  | MoveTask
  | NatsRequest
  | Payload
  | ReorderColumns
  | TaskAssignedMessage
  | TaskCommentedMessage
  | TaskCreatedMessage
  | TaskDeletedMessage
  | TaskMovedMessage
  | TaskRef
  | TaskUpdatedMessage
  | UpdateBoard
  | UpdateColumn
  | UpdateTask;

export interface AssignTask {
  /**
   * @maxItems 50
   */
  assignee_ids: string[];
}
export interface BoardChanges {
  name?: string;
}
/**
 * ``GET /v1/boards?organization_id=&division_id=`` and ``boards.v1.list_boards``.
 */
export interface BoardListQuery {
  division_id?: string | null;
  organization_id: string;
}
export interface BoardRef {
  board_id: string;
}
export interface BoardUpdatedMessage {
  board_id: string;
  changes: BoardChanges;
}
export interface CardChanges {
  description?: string;
  due_date?: string | null;
  /**
   * @maxItems 20
   */
  labels?: string[];
  title?: string;
}
/**
 * ``PATCH /v1/cards/{id}``: the changed fields at the top level, plus ``expected_version``.
 */
export interface CardPatch {
  description?: string;
  due_date?: string | null;
  expected_version?: number | null;
  /**
   * @maxItems 20
   */
  labels?: string[];
  title?: string;
}
/**
 * A partial update: only the keys the caller sent count (``null`` clears where allowed).
 */
export interface Changes {}
export interface ColumnChanges {
  name?: string;
  wip_limit?: number | null;
}
export interface ColumnReorderedMessage {
  board_id: string;
  /**
   * @minItems 1
   * @maxItems 100
   */
  column_ids: string[];
}
export interface ColumnUpdatedMessage {
  board_id: string;
  changes: ColumnChanges;
  column_id: string;
}
export interface CommentTask {
  body: string;
}
export interface CreateBoard {
  /**
   * @maxItems 100
   */
  columns?: string[];
  division_id?: string | null;
  id?: string | null;
  name: string;
  organization_id: string;
}
export interface CreateColumn {
  id?: string | null;
  name: string;
  position?: number | null;
  wip_limit?: number | null;
}
export interface CreateTask {
  /**
   * @maxItems 50
   */
  assignee_ids?: string[];
  column_id: string;
  description?: string;
  due_date?: string | null;
  id?: string | null;
  /**
   * @maxItems 20
   */
  labels?: string[];
  position?: number | null;
  title: string;
}
export interface EventsQuery {
  board_id: string;
  limit?: number;
  since_seq?: number;
}
export interface MoveTask {
  expected_version?: number | null;
  from_column_id?: string | null;
  position: number;
  to_column_id: string;
}
/**
 * The request envelope on ``boards.v1.<command>``.
 */
export interface NatsRequest {
  client_op_id?: string | null;
  correlation_id?: string | null;
  ip?: string | null;
  payload: {
    [k: string]: unknown;
  };
  token: string;
}
export interface Payload {}
export interface ReorderColumns {
  /**
   * @minItems 1
   * @maxItems 100
   */
  column_ids: string[];
}
export interface TaskAssignedMessage {
  /**
   * @maxItems 50
   */
  assignee_ids: string[];
  board_id: string;
  task_id: string;
}
export interface TaskCommentedMessage {
  board_id: string;
  body: string;
  task_id: string;
}
export interface TaskCreatedMessage {
  /**
   * @maxItems 50
   */
  assignee_ids?: string[];
  board_id: string;
  column_id: string;
  description?: string;
  due_date?: string | null;
  id?: string | null;
  /**
   * @maxItems 20
   */
  labels?: string[];
  position?: number | null;
  title: string;
}
export interface TaskDeletedMessage {
  board_id: string;
  task_id: string;
}
export interface TaskMovedMessage {
  board_id: string;
  expected_version?: number | null;
  from_column_id?: string | null;
  position: number;
  task_id: string;
  to_column_id: string;
}
export interface TaskRef {
  board_id: string;
  task_id: string;
}
export interface TaskUpdatedMessage {
  board_id: string;
  changes: CardChanges;
  expected_version?: number | null;
  task_id: string;
}
export interface UpdateBoard {
  changes: BoardChanges;
}
export interface UpdateColumn {
  changes: ColumnChanges;
}
export interface UpdateTask {
  changes: CardChanges;
  expected_version?: number | null;
}
