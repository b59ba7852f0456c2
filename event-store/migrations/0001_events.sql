-- The event log. Global order is (tx_id, seq), read only below the oldest running transaction,
-- so an event whose transaction commits late is never skipped by a reader that moved on.
-- Event ids are checked per stream, where an append lands (as KurrentDB does); a global unique
-- index on random UUIDs would cost a third of the append rate.
create table if not exists es_events (
    seq            bigint generated always as identity (cache 1000),
    tx_id          bigint not null default (pg_current_xact_id()::text::bigint),
    stream_id      text not null,
    revision       bigint not null,
    event_id       uuid not null,
    event_type     text not null,
    schema_version integer not null,
    data           jsonb not null,
    metadata       jsonb not null,
    recorded_at    timestamptz not null default now(),
    primary key (tx_id, seq),
    unique (stream_id, revision)
);
