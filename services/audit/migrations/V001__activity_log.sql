-- The tamper-evident activity log (seed: kanban_activity_log), the per-chain head/anchor rows that
-- serialize appends and survive retention, and the dead-letter table for unstorable messages.
-- Applied with search_path = audit, public.

CREATE TABLE kanban_activity_log (
    id              bigserial PRIMARY KEY,
    -- The seed's columns.
    task_id         text,
    action          text        NOT NULL,  -- the envelope's event_type
    details         jsonb       NOT NULL,  -- the envelope's data
    user_id         text,
    organization_id text,                  -- NULL: a security event of no known organization
    division_id     text,
    created_at      timestamptz NOT NULL,  -- when it happened (the envelope's timestamp)
    -- Where it came from.
    board_id        text,
    event_id        text        NOT NULL,
    seq             bigint,
    correlation_id  text,
    trace_id        text,
    stream          text        NOT NULL,
    subject         text        NOT NULL,
    recorded_at     timestamptz NOT NULL,  -- when audit committed it
    -- The hash chain: one chain per organization (chain_key = organization_id, or ':global').
    chain_key       text        NOT NULL,
    chain_pos       bigint      NOT NULL,
    prev_hash       text        NOT NULL,
    hash            text        NOT NULL,
    CONSTRAINT kanban_activity_log_event_id_key UNIQUE (event_id),
    CONSTRAINT kanban_activity_log_chain_pos_key UNIQUE (chain_key, chain_pos)
);

-- Queries are always within one chain, newest first by id, optionally narrowed by one column.
CREATE INDEX kanban_activity_log_chain_id ON kanban_activity_log (chain_key, id DESC);
CREATE INDEX kanban_activity_log_board ON kanban_activity_log (chain_key, board_id, id DESC);
CREATE INDEX kanban_activity_log_task ON kanban_activity_log (chain_key, task_id, id DESC);
CREATE INDEX kanban_activity_log_user ON kanban_activity_log (chain_key, user_id, id DESC);
CREATE INDEX kanban_activity_log_correlation ON kanban_activity_log (chain_key, correlation_id, id DESC);
CREATE INDEX kanban_activity_log_created ON kanban_activity_log (chain_key, created_at);

-- One row per chain. Appends lock it FOR UPDATE (one writer per chain at a time, across replicas);
-- retention moves the anchor forward: the position and hash of the last row it deleted, which is
-- where verification starts.
CREATE TABLE chain_heads (
    chain_key   text PRIMARY KEY,
    head_pos    bigint NOT NULL DEFAULT 0,
    head_hash   text   NOT NULL,
    anchor_pos  bigint NOT NULL DEFAULT 0,
    anchor_hash text   NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Messages that can never become an activity row; kept verbatim (bytes) with the reason.
CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    stream        text        NOT NULL,
    stream_seq    bigint      NOT NULL,
    subject       text        NOT NULL,
    payload       bytea       NOT NULL,
    payload_text  text,
    reason        text        NOT NULL,
    headers       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    num_delivered integer     NOT NULL DEFAULT 1,
    stored_at     timestamptz NOT NULL,    -- when JetStream stored the message
    received_at   timestamptz NOT NULL DEFAULT now(),
    -- One stream message, even if the stream is recreated and its sequence numbers start over.
    CONSTRAINT dead_letters_message_key UNIQUE (stream, stream_seq, stored_at)
);
