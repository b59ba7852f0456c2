-- Repairs of events a projection could not apply. This file is a released migration once
-- merged: never edit it; add the next one.

-- An operator's corrected copy of an event (edited in `projection_dead_letters`, then retried).
-- The log is never rewritten; instead the projection applies this copy in place of the logged
-- event every time it meets that event, so a repair survives rebuilds.
create table if not exists projection_corrections (
    projection      text not null,
    event_id        uuid not null,
    stream_id       text not null,
    revision        bigint not null,
    event_type      text not null,
    schema_version  integer not null,
    data            jsonb not null,
    metadata        jsonb not null,
    -- who retried the repair, why, and the error it repaired
    corrected_by    text not null,
    reason          text,
    repaired_error  text not null,
    corrected_at    timestamptz not null default now(),
    primary key (projection, event_id)
);

-- Bumped by every retry that writes a correction: each batch reads it with the checkpoint it
-- locks anyway, and reloads its corrections only when it has moved.
alter table projection_checkpoints add column if not exists corrections_version bigint not null default 0;
