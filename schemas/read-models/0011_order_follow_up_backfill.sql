-- Orders already waiting when 0008 added the follow-up columns got no `next_reminder_at` (the
-- projector derives it only when it applies an event), so an order stuck on a silent service,
-- which gets no further event, was never chased. Its first reminder is due at its deadline, as
-- the projector derives it; the reconciler decides from the stream anyway. This file is a
-- released migration once merged: never edit it; add the next one.
update order_status set next_reminder_at = deadline_at
 where next_reminder_at is null and deadline_at is not null
   and reminder_attempts = 0 and last_reminder_at is null;
