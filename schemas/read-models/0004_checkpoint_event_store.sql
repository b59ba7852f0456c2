-- Which event-store backend a checkpoint's position belongs to. Positions of PostgreSQL
-- (transaction id, sequence) and KurrentDB (commit, prepare) cannot be compared: a projector
-- refuses to resume from the other backend's checkpoint. This file is a released migration
-- once merged: never edit it; add the next one.
alter table projection_checkpoints add column if not exists event_store text;

-- How many times the projection was rebuilt in place. A rebuild moves the checkpoint back; a
-- reader that remembers a checkpoint (read-your-writes) starts over when this changes.
alter table projection_checkpoints add column if not exists rebuilds bigint not null default 0;
