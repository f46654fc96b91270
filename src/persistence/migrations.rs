//! Schema migrations: the SQL files under `migrations/`, embedded at compile
//! time and applied by refinery at start-up and by `parley migrate`.
//!
//! Several nodes (or test servers) may start at once against one database, so
//! the run holds a Postgres advisory lock: one applies, the others wait and
//! then find nothing left to do.

use anyhow::Context;
use deadpool_postgres::Pool;

refinery::embed_migrations!("migrations");

/// Arbitrary but fixed key of the advisory lock that serialises migration runs.
const MIGRATION_LOCK_KEY: i64 = 0x7061_726c_6579; // "parley"

/// Applies every pending migration and returns how many were applied.
pub async fn run(pool: &Pool) -> anyhow::Result<usize> {
    let mut client = pool.get().await.context("cannot connect to the database")?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let outcome = migrations::runner().run_async(&mut **client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let report = outcome?;
    Ok(report.applied_migrations().len())
}
