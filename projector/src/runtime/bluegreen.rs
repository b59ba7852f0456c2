//! Blue/green rebuilds: a new version of a projection is built into shadow tables (a schema of
//! their own) while the live version keeps serving and its projector keeps following the log,
//! then switched in atomically; the version it replaced is kept, for a rollback that puts it
//! back the same way.
//!
//! The shadow runtime is the projection's own code on connections whose `search_path` puts the
//! shadow schema first: its read models, checkpoints, dead letters and parked streams are the
//! shadow's; the corrections are the live ones (`public`). The switch, in one transaction:
//! locks the live checkpoint rows (no live batch commits meanwhile), applies to the shadow the
//! few events it lacks up to the live checkpoint (refusing when more than a bound, to catch up
//! outside the transaction and try again), moves the live tables into the schema of the
//! previous version and the shadow's into `public`, sets the live checkpoints to the shadow's
//! and moves their fencing tokens on (a running projector's next batch is refused; it takes
//! its lease again and resumes from the new checkpoint on the new tables), and notifies the
//! readers.

use super::Runtime;
use crate::projection::{Progress, Projection, CHANGES_CHANNEL};
use crate::ProjectorError;
use deadpool_postgres::Transaction;
use event_store::{Position, StoreError};
use std::sync::Arc;

/// The most events the switch applies to the shadow under the live checkpoints' lock.
pub const SWITCH_BOUND: usize = 500;
/// How many times the switch catches the shadow up and tries again before giving up.
const SWITCH_ATTEMPTS: usize = 20;
/// The runtime's tables a shadow keeps of its own (the corrections are shared).
const SHADOW_RUNTIME_TABLES: &[&str] = &[
    "projection_checkpoints",
    "projection_dead_letters",
    "projection_parked_streams",
];

/// The schema of the shadow being built (`next`), of the version kept for a rollback
/// (`previous`), or of the live version on its way out during a switch (`retired`).
pub fn schema(kind: &str, projection: &str) -> String {
    format!("milestone_{kind}_{projection}")
}

/// What a blue/green rebuild or rollback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switched {
    /// Events replayed into the shadow (or the previous version) before the switch.
    pub replayed: u64,
    /// Events the switch itself applied, under the lock.
    pub applied_at_switch: u64,
    /// The live checkpoint after the switch (the slowest partition's).
    pub position: Option<Position>,
}

/// Held while a blue/green rebuild or rollback runs: a session advisory lock on a connection
/// of its own, released when dropped (or when the process dies).
struct BlueGreenLock {
    _client: tokio_postgres::Client,
}

impl<P: Projection> Runtime<P> {
    /// Builds the current code's version of the projection into shadow tables while the live
    /// version keeps serving, then switches it in atomically (see the module's text). The live
    /// version is kept for [`Runtime::rollback`].
    ///
    /// # Errors
    /// [`ProjectorError::BlueGreenRunning`] when another blue/green rebuild or rollback of the
    /// projection runs; [`ProjectorError::ShadowBehind`]; store or database errors (the live
    /// version is then untouched).
    pub async fn rebuild_blue_green(
        &self,
        mut progress: impl FnMut(Progress),
    ) -> Result<Switched, ProjectorError> {
        let _lock = self.lock_blue_green().await?;
        let next = schema("next", P::NAME);
        self.create_shadow(&next).await?;
        let shadow = self.in_schema(&next).await?;
        self.switch_in(&shadow, &mut progress).await
    }

    /// Puts back the version a blue/green rebuild replaced: catches it up with the log, then
    /// switches it in the same way; the version it replaces becomes the previous one (a second
    /// rollback swaps them again).
    ///
    /// # Errors
    /// [`ProjectorError::NoPreviousVersion`]; as [`Runtime::rebuild_blue_green`].
    pub async fn rollback(
        &self,
        mut progress: impl FnMut(Progress),
    ) -> Result<Switched, ProjectorError> {
        let _lock = self.lock_blue_green().await?;
        let previous = schema("previous", P::NAME);
        let client = self.pool.get().await?;
        let kept = client
            .query_one(
                "select count(*) from information_schema.tables
                  where table_schema = $1 and table_name = any($2)",
                &[&previous, &P::TABLES],
            )
            .await?;
        drop(client);
        if kept.get::<_, i64>(0) != P::TABLES.len() as i64 {
            return Err(ProjectorError::NoPreviousVersion(P::NAME));
        }
        let shadow = self.in_schema(&previous).await?;
        self.switch_in(&shadow, &mut progress).await
    }

    /// Refuses a second blue/green run of the projection while one is under way.
    async fn lock_blue_green(&self) -> Result<BlueGreenLock, ProjectorError> {
        let client = crate::lease::connect(&self.pg_config).await?;
        let key = format!("milestone blue/green {}", P::NAME);
        let taken: bool = client
            .query_one("select pg_try_advisory_lock(hashtext($1))", &[&key])
            .await?
            .get(0);
        if !taken {
            return Err(ProjectorError::BlueGreenRunning(P::NAME));
        }
        Ok(BlueGreenLock { _client: client })
    }

    /// A fresh schema `name` with empty tables made like the live ones (columns, defaults,
    /// checks, constraints and indexes under the same names, so that they are the live ones'
    /// once switched in), and the runtime tables a shadow keeps of its own.
    async fn create_shadow(&self, name: &str) -> Result<(), ProjectorError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let schema = quoted(name);
        tx.batch_execute(&format!(
            "drop schema if exists {schema} cascade; create schema {schema}"
        ))
        .await?;
        for table in SHADOW_RUNTIME_TABLES {
            tx.batch_execute(&format!(
                "create table {schema}.{table} (like public.{table} including all)"
            ))
            .await?;
        }
        for table in P::TABLES {
            copy_table(&tx, &schema, table).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// This runtime on the tables of schema `name` (first on the `search_path`), the runtime's
    /// shared tables from `public`; with its checkpoint rows.
    async fn in_schema(&self, name: &str) -> Result<Self, ProjectorError> {
        let mut pg_config = self.pg_config.clone();
        let options = pg_config.get_options().unwrap_or_default().to_owned();
        pg_config.options(format!("{options} -c search_path={name},public"));
        let (pool, pg_config) =
            service_kit::postgres::build_pool_from(pg_config, self.config.pool_size)
                .map_err(StoreError::from)?;
        let shadow = Self {
            pool,
            pg_config,
            // Its own cache: the shadow's checkpoint rows count their own corrections version.
            corrections: Arc::default(),
            shadow: Some(name.into()),
            ..self.clone()
        };
        let client = shadow.pool.get().await?;
        crate::db::ensure_checkpoint(&client, P::NAME).await?;
        let units = shadow.units();
        let keys: Vec<&str> = units.iter().map(|u| &*u.key).collect();
        crate::db::ensure_partitions(&client, P::NAME, shadow.config.partitions, &keys).await?;
        Ok(shadow)
    }

    /// Catches `shadow` up with the log (as far as its head when the round began: under a
    /// steady flow of events the log has always more), then switches it in; tries again
    /// (catching up first) while it is more than [`SWITCH_BOUND`] events behind the live
    /// projection.
    async fn switch_in(
        &self,
        shadow: &Self,
        progress: &mut impl FnMut(Progress),
    ) -> Result<Switched, ProjectorError> {
        let mut replayed = 0;
        for _ in 0..SWITCH_ATTEMPTS {
            let head = self.store.head_position().await?;
            for unit in shadow.units() {
                let before = replayed;
                replayed += unit
                    .catch_up(None, head, |p| {
                        progress(Progress {
                            events: before + p.events,
                            ..p
                        });
                    })
                    .await?;
            }
            if let Some((applied_at_switch, position)) = self.try_switch(shadow).await? {
                return Ok(Switched {
                    replayed,
                    applied_at_switch,
                    position,
                });
            }
        }
        Err(ProjectorError::ShadowBehind {
            projection: P::NAME,
            bound: SWITCH_BOUND,
        })
    }

    /// One attempt at the switch, in one transaction on a shadow connection (unqualified names
    /// are the shadow's, the live ones are named with `public.`); `None` when the shadow is too
    /// far behind (nothing changed).
    async fn try_switch(
        &self,
        shadow: &Self,
    ) -> Result<Option<(u64, Option<Position>)>, ProjectorError> {
        let Some(source) = shadow.shadow.as_deref() else {
            return Err(ProjectorError::Corrupt(
                "switching in the live tables".into(),
            ));
        };
        let units = shadow.units();
        let keys: Vec<&str> = units.iter().map(|u| &*u.key).collect();
        let mut client = shadow.pool.get().await?;
        let tx = client.transaction().await?;
        // The live checkpoints, locked: no live batch commits until the switch is done.
        let mut live = Vec::with_capacity(keys.len());
        for key in &keys {
            let row = tx
                .query_opt(
                    "select position_commit, position_prepare from public.projection_checkpoints
                      where projection = $1 for update",
                    &[key],
                )
                .await?;
            live.push(row.and_then(|r| position_of(r.get(0), r.get(1))));
        }
        // The events the shadow lacks up to the live checkpoints, applied here.
        let mut applied = 0;
        let mut position = None;
        for (i, (unit, live)) in units.iter().zip(&live).enumerate() {
            let at = crate::db::load_checkpoint(&tx, &unit.key).await?;
            let mut reached = at;
            if at < *live {
                let page = self
                    .store
                    .read_all(at, P::STREAM_PREFIX, SWITCH_BOUND)
                    .await?;
                let missing: Vec<_> = page
                    .into_iter()
                    .take_while(|e| Some(e.position) <= *live)
                    .collect();
                if missing.last().map(|e| e.position) != *live {
                    return Ok(None);
                }
                unit.write_batch(&tx, None, at, &missing).await?;
                applied += missing.len() as u64;
                reached = *live;
            }
            if i == 0 || reached < position {
                position = reached;
            }
        }
        let retired = quoted(&schema("retired", P::NAME));
        let previous = quoted(&schema("previous", P::NAME));
        let source = quoted(source);
        tx.batch_execute(&format!(
            "drop schema if exists {retired} cascade; create schema {retired}"
        ))
        .await?;
        // What the live version's projector kept besides its tables, kept with them.
        for table in SHADOW_RUNTIME_TABLES {
            tx.batch_execute(&format!(
                "create table {retired}.{table} (like public.{table} including all)"
            ))
            .await?;
        }
        let mut whole: Vec<&str> = keys.clone();
        whole.push(P::NAME);
        tx.execute(
            &format!(
                "insert into {retired}.projection_checkpoints
                 select * from public.projection_checkpoints where projection = any($1)"
            ),
            &[&whole],
        )
        .await?;
        for table in ["projection_dead_letters", "projection_parked_streams"] {
            tx.execute(
                &format!(
                    "insert into {retired}.{table} select * from public.{table} where projection = $1"
                ),
                &[&P::NAME],
            )
            .await?;
            tx.execute(
                &format!("delete from public.{table} where projection = $1"),
                &[&P::NAME],
            )
            .await?;
            tx.execute(
                &format!(
                    "insert into public.{table} select * from {source}.{table} where projection = $1"
                ),
                &[&P::NAME],
            )
            .await?;
        }
        for table in P::TABLES {
            tx.batch_execute(&format!(
                "alter table public.{table} set schema {retired};
                 alter table {source}.{table} set schema public"
            ))
            .await?;
        }
        // The shadow's positions, and a new fence: a live batch under way is refused at its
        // commit and its projector resumes from here. The corrections are reloaded.
        tx.execute(
            &format!(
                "update public.projection_checkpoints l
                    set position = s.position, position_commit = s.position_commit,
                        position_prepare = s.position_prepare, event_store = s.event_store,
                        events_applied = s.events_applied, fencing_token = l.fencing_token + 1,
                        corrections_version = l.corrections_version + 1, updated_at = now()
                   from {source}.projection_checkpoints s
                  where s.projection = l.projection and l.projection = any($1)"
            ),
            &[&keys],
        )
        .await?;
        tx.batch_execute(&format!(
            "drop schema {source} cascade; drop schema if exists {previous} cascade;
             alter schema {retired} rename to {previous}"
        ))
        .await?;
        notify_switched::<P>(&tx, &keys).await?;
        tx.commit().await?;
        Ok(Some((applied, position)))
    }
}

/// Tells the readers that every instance may have changed, at each live checkpoint `keys`.
async fn notify_switched<P: Projection>(
    tx: &Transaction<'_>,
    keys: &[&str],
) -> Result<(), ProjectorError> {
    let rows = tx
        .query(
            "select projection, position_commit, position_prepare from public.projection_checkpoints
              where projection = any($1)",
            &[&keys],
        )
        .await?;
    for row in rows {
        let key: String = row.get(0);
        let Some(position) = position_of(row.get(1), row.get(2)) else {
            continue;
        };
        let payload = serde_json::json!({
            "projection": key,
            "position": position.to_string(),
            P::CHANGED_KEY: serde_json::Value::Null,
        });
        crate::db::notify(tx, CHANGES_CHANNEL, &payload.to_string()).await?;
    }
    Ok(())
}

/// Creates `schema.table` empty, like `public.table`: columns, defaults, checks and comments
/// by `like`, then its constraints and indexes under the live ones' names.
async fn copy_table(tx: &Transaction<'_>, schema: &str, table: &str) -> Result<(), ProjectorError> {
    tx.batch_execute(&format!(
        "create table {schema}.{table} (like public.{table} including all excluding indexes)"
    ))
    .await?;
    let live = format!("public.{table}");
    let constraints = tx
        .query(
            "select conname::text, pg_get_constraintdef(oid) from pg_constraint
              where conrelid = $1::text::regclass and contype in ('p', 'u', 'x')",
            &[&live],
        )
        .await?;
    for row in constraints {
        let (name, definition): (String, String) = (row.get(0), row.get(1));
        tx.batch_execute(&format!(
            "alter table {schema}.{table} add constraint {} {definition}",
            quoted(&name)
        ))
        .await?;
    }
    let indexes = tx
        .query(
            "select indexdef from pg_indexes i
              where schemaname = 'public' and tablename = $1
                and not exists (select 1 from pg_constraint c
                                 where c.conindid = format('%I.%I', i.schemaname, i.indexname)::regclass)",
            &[&table],
        )
        .await?;
    for row in indexes {
        let definition: String = row.get(0);
        let definition = definition.replacen(
            &format!(" ON {live} "),
            &format!(" ON {schema}.{table} "),
            1,
        );
        tx.batch_execute(&definition).await?;
    }
    Ok(())
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn position_of(commit: Option<i64>, prepare: Option<i64>) -> Option<Position> {
    commit
        .zip(prepare)
        .map(|(c, p)| Position::new(c as u64, p as u64))
}
