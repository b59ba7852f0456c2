-- A projection run as N partitions: each partition has a checkpoint row of its own, keyed
-- `projection#index/N`; the projection's own row (the plain name) records N. This file is a
-- released migration once merged: never edit it; add the next one.
alter table projection_checkpoints add column if not exists partitions integer not null default 1;

-- Where each projection stands, whatever its partitions: the position of its partition
-- furthest behind (every event up to it is applied), the events applied by all of them, the
-- latest update; readers (read-your-writes, projectionStatus) read this instead of the rows.
create or replace view projection_progress as
with units as (
    select whole.projection as whole, whole.rebuilds as whole_rebuilds, unit.*
      from projection_checkpoints whole
      join projection_checkpoints unit
        on (whole.partitions = 1 and unit.projection = whole.projection)
        or (whole.partitions > 1 and split_part(unit.projection, '#', 1) = whole.projection
            and split_part(unit.projection, '/', 2) = whole.partitions::text)
     where position('#' in whole.projection) = 0
)
select whole as projection,
       max(whole_rebuilds) as rebuilds,
       sum(events_applied)::bigint as events_applied,
       max(updated_at) as updated_at,
       (array_agg(position_commit order by position_commit nulls first, position_prepare nulls first))[1]
           as position_commit,
       (array_agg(position_prepare order by position_commit nulls first, position_prepare nulls first))[1]
           as position_prepare
  from units
 group by whole;
