-- Read models of the order-fulfilment workflow, owned by the projector and read by the query
-- API. This file is a released migration: never edit it; add the next one.

-- One row per order: where it stands, what it waits for, what it owes.
create table if not exists order_status (
    order_id               uuid primary key,
    status                 text not null,
    customer_id            text not null,
    currency               text not null,
    total_minor            bigint not null,
    line_count             integer not null,
    lines                  jsonb not null,
    shipping_address       jsonb not null,
    last_milestone         text not null,
    last_milestone_at      timestamptz not null,
    pending_actions        text[] not null,
    failure_reason         text,
    compensations_owed     text[] not null,
    compensations_done     text[] not null,
    payment_id             text,
    reservation_id         text,
    carrier                text,
    tracking_number        text,
    placed_at              timestamptz not null,
    payment_authorized_at  timestamptz,
    inventory_reserved_at  timestamptz,
    accepted_at            timestamptz,
    rejected_at            timestamptz,
    fulfillment_started_at timestamptz,
    shipped_at             timestamptz,
    delivered_at           timestamptz,
    cancelled_at           timestamptz,
    payment_voided_at      timestamptz,
    inventory_released_at  timestamptz,
    escalated_at           timestamptz,
    escalation_count       integer not null,
    escalation_reason      text,
    correlation_id         text,
    -- when the step the order waits for is due; null when it waits for nothing
    deadline_at            timestamptz,
    stream_revision        bigint not null,
    -- the log position of the last applied event: opaque token and its ordered parts
    last_position          text not null,
    last_position_commit   bigint not null,
    last_position_prepare  bigint not null,
    -- the domain's aggregate state (JSON), so the next event can be applied without a replay;
    -- text rather than jsonb: only the projector reads it, and it is not parsed on every write
    state                  text not null
);

create index if not exists order_status_status_placed on order_status (status, placed_at, order_id);
create index if not exists order_status_customer_placed on order_status (customer_id, placed_at, order_id);
create index if not exists order_status_placed on order_status (placed_at, order_id);
create index if not exists order_status_deadline on order_status (deadline_at, order_id) where deadline_at is not null;

-- One row per event of an order.
create table if not exists order_timeline (
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

-- Orders per status, kept by the projector so dashboards never scan.
create table if not exists order_status_counts (
    status  text primary key,
    orders  bigint not null
);

-- Where each projection has got to in the log. Written in the same transaction as its rows.
create table if not exists projection_checkpoints (
    projection        text primary key,
    position          text,
    position_commit   bigint,
    position_prepare  bigint,
    events_applied    bigint not null default 0,
    updated_at        timestamptz not null default now()
);

-- Events a projection could not apply, and the events of that order parked behind them.
create table if not exists projection_dead_letters (
    id              bigserial primary key,
    projection      text not null,
    stream_id       text not null,
    revision        bigint not null,
    position        text not null,
    event_id        uuid not null,
    event_type      text not null,
    schema_version  integer not null,
    data            jsonb not null,
    metadata        jsonb not null,
    recorded_at     timestamptz not null,
    error           text not null,
    created_at      timestamptz not null default now(),
    unique (projection, stream_id, revision)
);

-- Streams whose events wait behind a dead letter; others keep flowing.
create table if not exists projection_parked_streams (
    projection  text not null,
    stream_id   text not null,
    reason      text not null,
    parked_at   timestamptz not null default now(),
    primary key (projection, stream_id)
);
