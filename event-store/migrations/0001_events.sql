-- The event log. Global order is (tx_id, seq), read only below the oldest running transaction,
-- so an event whose transaction commits late is never skipped by a reader that moved on.
create table if not exists es_events (
    seq            bigint generated always as identity,
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
    unique (stream_id, revision),
    unique (event_id)
);

create or replace function es_notify_appended() returns trigger language plpgsql as $$
begin
    perform pg_notify('es_events', '');
    return null;
end $$;

drop trigger if exists es_events_notify on es_events;
create trigger es_events_notify after insert on es_events
    for each statement execute function es_notify_appended();
