-- Boards, columns, cards, comments; the per-board event log (outbox and replay log in one);
-- the client operations already applied (idempotent retries).
--
-- Ids are client-choosable strings (^[A-Za-z0-9_-]{1,64}$) and global, because the REST paths
-- address columns and cards by id alone. Order inside a board is a fractional-index `rank`
-- compared byte-wise (COLLATE "C"), so a move rewrites one row and never renumbers a column.
-- The rank uniqueness constraints are DEFERRABLE (checked at the end of each statement rather
-- than per row) so a rebalance or a column reorder can rewrite all keys in one UPDATE.

CREATE TABLE kanban_boards (
    id              text PRIMARY KEY,
    organization_id text NOT NULL,
    division_id     text,
    name            text NOT NULL,
    seq             bigint NOT NULL DEFAULT 0 CHECK (seq >= 0),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX kanban_boards_organization ON kanban_boards (organization_id);

CREATE TABLE kanban_columns (
    id         text PRIMARY KEY,
    board_id   text NOT NULL REFERENCES kanban_boards (id),
    name       text NOT NULL,
    rank       text COLLATE "C" NOT NULL,
    wip_limit  integer CHECK (wip_limit >= 0),
    version    integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT kanban_columns_rank_unique UNIQUE (board_id, rank) DEFERRABLE INITIALLY IMMEDIATE
);

CREATE TABLE kanban_cards (
    id           text PRIMARY KEY,
    board_id     text NOT NULL REFERENCES kanban_boards (id),
    column_id    text NOT NULL REFERENCES kanban_columns (id),
    rank         text COLLATE "C" NOT NULL,
    title        text NOT NULL,
    description  text NOT NULL DEFAULT '',
    due_date     date,
    labels       text[] NOT NULL DEFAULT '{}',
    assignee_ids text[] NOT NULL DEFAULT '{}',
    version      integer NOT NULL DEFAULT 1,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    CONSTRAINT kanban_cards_rank_unique UNIQUE (column_id, rank) DEFERRABLE INITIALLY IMMEDIATE
);
CREATE INDEX kanban_cards_board ON kanban_cards (board_id);

CREATE TABLE kanban_comments (
    id         text PRIMARY KEY,
    board_id   text NOT NULL REFERENCES kanban_boards (id),
    card_id    text NOT NULL REFERENCES kanban_cards (id) ON DELETE CASCADE,
    author_id  text NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX kanban_comments_card ON kanban_comments (card_id, created_at);

-- One row per committed event, written in the mutation's transaction. `published_at` is set once
-- JetStream acknowledged it; the relay publishes whatever is still NULL.
CREATE TABLE kanban_board_events (
    board_id        text NOT NULL REFERENCES kanban_boards (id),
    seq             bigint NOT NULL,
    event_id        uuid NOT NULL UNIQUE,
    organization_id text NOT NULL,
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    actor           text,
    correlation_id  text,
    trace_id        text,
    trace_context   jsonb,
    created_at      timestamptz NOT NULL,
    published_at    timestamptz,
    PRIMARY KEY (board_id, seq)
);
CREATE INDEX kanban_board_events_unpublished ON kanban_board_events (created_at) WHERE published_at IS NULL;
CREATE INDEX kanban_board_events_created ON kanban_board_events (created_at);

-- (user, client_op_id) -> the result returned the first time; `fingerprint` refuses reuse of an
-- id for a different request.
CREATE TABLE kanban_client_ops (
    user_id      text NOT NULL,
    client_op_id text NOT NULL,
    command      text NOT NULL,
    fingerprint  text NOT NULL,
    board_id     text,
    result       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_op_id)
);
CREATE INDEX kanban_client_ops_created ON kanban_client_ops (created_at);
