-- Read models of the returns workflow, owned by the projector and read by the query API; the
-- same conventions as the order read models. This file is a released migration once merged:
-- never edit it; add the next one.

-- One row per return case, keyed by its order (the stream is `return-<order id>`).
create table if not exists return_status (
    order_id               uuid primary key,
    status                 text not null,
    currency               text not null,
    reason                 text not null,
    -- each requested line: sku, quantity, unit_price_minor, and once inspected
    -- accepted_quantity and refused_quantity (null before)
    lines                  jsonb not null,
    line_count             integer not null,
    -- what the requested lines refund
    refund_due_minor       bigint not null,
    -- what the accepted lines refund; null until the items are received
    refund_accepted_minor  bigint,
    refunded_minor         bigint not null default 0,
    refund_id              text,
    rma_number             text,
    last_milestone         text not null,
    last_milestone_at      timestamptz not null,
    pending_actions        text[] not null,
    failure_reason         text,
    compensations_owed     text[] not null,
    compensations_done     text[] not null,
    requested_at           timestamptz not null,
    approved_at            timestamptz,
    rejected_at            timestamptz,
    received_at            timestamptz,
    refunded_at            timestamptz,
    cancelled_at           timestamptz,
    shipped_back_at        timestamptz,
    escalated_at           timestamptz,
    escalation_count       integer not null,
    escalation_reason      text,
    correlation_id         text,
    -- when the step the return waits for is due; null when it waits for nothing
    deadline_at            timestamptz,
    stream_revision        bigint not null,
    -- the log position of the last applied event: opaque token and its ordered parts
    last_position          text not null,
    last_position_commit   bigint not null,
    last_position_prepare  bigint not null,
    -- the domain's return case (JSON) so the next event applies without a replay, and the
    -- version of its serde form; only the projector reads them
    state                  text not null,
    state_version          integer not null
);

create index if not exists return_status_status_requested on return_status (status, requested_at, order_id);
create index if not exists return_status_requested on return_status (requested_at, order_id);
create index if not exists return_status_deadline on return_status (deadline_at, order_id) where deadline_at is not null;

-- One row per event of a return case.
create table if not exists return_timeline (
    order_id        uuid not null,
    revision        bigint not null,
    event_type      text not null,
    occurred_at     timestamptz not null,
    recorded_at     timestamptz not null,
    position        text not null,
    event_id        uuid not null,
    correlation_id  text,
    causation_id    text,
    summary         text not null,
    primary key (order_id, revision)
);

-- Return cases per status, kept by the projector so dashboards never scan.
create table if not exists return_status_counts (
    status   text primary key,
    returns  bigint not null
);
