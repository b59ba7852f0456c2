-- The reconciler's follow-up of each return: reminders recorded for its most reminded pending
-- action, the last one's time, and when the reconciler next chases it (its next reminder, or its
-- escalation). The reconciler selects the returns whose `next_reminder_at` has passed. This file
-- is a released migration once merged: never edit it; add the next one.
alter table return_status add column if not exists reminder_attempts integer not null default 0;
alter table return_status add column if not exists last_reminder_at timestamptz;
alter table return_status add column if not exists next_reminder_at timestamptz;
create index if not exists return_status_next_reminder_at on return_status (next_reminder_at)
    where next_reminder_at is not null;
