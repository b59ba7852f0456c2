-- Who caused each order timeline event: the principal (subject, role, client) recorded in its
-- metadata; null for an event recorded without one (authentication disabled, or before
-- principals were recorded). This file is a released migration once merged: never edit it; add
-- the next one.
alter table order_timeline add column if not exists principal_subject text;
alter table order_timeline add column if not exists principal_role text;
alter table order_timeline add column if not exists principal_client text;
