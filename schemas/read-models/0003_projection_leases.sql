-- One active projector per projection. This file is a released migration once merged: never
-- edit it; add the next one.

-- The lease: its holder renews `expires_at` every fraction of the time to live; a standby takes
-- over an expired lease and increments `fencing_token`. `holder_pid` is the server process of
-- the holder's renewing connection: when that process is gone (the holder died and the server
-- saw its connection close), a standby takes over at once instead of waiting for the expiry.
create table if not exists projection_leases (
    projection     text primary key,
    owner          text not null,
    fencing_token  bigint not null,
    expires_at     timestamptz not null,
    holder_pid     integer,
    acquired_at    timestamptz not null default now(),
    renewed_at     timestamptz not null default now()
);

-- The fence: the token of the current holder, copied here by the takeover. Every batch's
-- checkpoint update requires its writer's token, so a replaced holder cannot commit.
alter table projection_checkpoints add column if not exists fencing_token bigint not null default 0;
