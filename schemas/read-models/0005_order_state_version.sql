-- The version of the serde form of the aggregate kept in `order_status.state`. A projector that
-- reads another version refuses the row (its next event is dead-lettered and the order parked)
-- rather than misreading it; a rebuild rewrites every row in the current form. Rows written
-- before this column existed are in version 1. This file is a released migration once merged:
-- never edit it; add the next one.
alter table order_status add column if not exists state_version integer not null default 1;
