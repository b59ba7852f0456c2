-- The projector runtime's own tables, whatever projections it runs: checkpoints, dead letters,
-- parked streams, corrections and leases. The runtime applies this file before any projection's
-- own migrations, so a projection lists only its read models. Until this file they came with
-- 0001-0004; everything here is `if not exists`, so a database migrated by those is unchanged.
-- This file is a released migration once merged: never edit it; add the next one.

-- Where each projection has got to in the log. Written in the same transaction as its rows.
create table if not exists projection_checkpoints (
    projection        text primary key,
    position          text,
    position_commit   bigint,
    position_prepare  bigint,
    events_applied    bigint not null default 0,
    updated_at        timestamptz not null default now()
);
-- Bumped by every retry that writes a correction: each batch reads it with the checkpoint it
-- locks anyway, and reloads its corrections only when it has moved.
alter table projection_checkpoints add column if not exists corrections_version bigint not null default 0;
-- The fence: the token of the lease's current holder; every batch's checkpoint update requires
-- its writer's token, so a replaced holder cannot commit.
alter table projection_checkpoints add column if not exists fencing_token bigint not null default 0;
-- Which event-store backend the checkpoint's position belongs to.
alter table projection_checkpoints add column if not exists event_store text;
-- How many times the projection was rebuilt in place.
alter table projection_checkpoints add column if not exists rebuilds bigint not null default 0;

-- Events a projection could not apply, and the events of that stream parked behind them.
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

-- An operator's corrected copy of an event, applied in place of the logged event every time the
-- projection meets it, so a repair survives rebuilds.
create table if not exists projection_corrections (
    projection      text not null,
    event_id        uuid not null,
    stream_id       text not null,
    revision        bigint not null,
    event_type      text not null,
    schema_version  integer not null,
    data            jsonb not null,
    metadata        jsonb not null,
    corrected_by    text not null,
    reason          text,
    repaired_error  text not null,
    corrected_at    timestamptz not null default now(),
    primary key (projection, event_id)
);

-- One active projector per projection: the holder renews `expires_at`; a standby takes over an
-- expired lease (or one whose holder's server process `holder_pid` is gone) and increments
-- `fencing_token`.
create table if not exists projection_leases (
    projection     text primary key,
    owner          text not null,
    fencing_token  bigint not null,
    expires_at     timestamptz not null,
    holder_pid     integer,
    acquired_at    timestamptz not null default now(),
    renewed_at     timestamptz not null default now()
);
