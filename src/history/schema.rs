//! The history's SQL schema and its migrations.
//!
//! `PRAGMA user_version` holds the number of migrations applied; [`migrate`] applies the
//! missing ones in one transaction, so a database is always at one whole version. A database
//! written by a newer director (a higher version than [`MIGRATIONS`] knows) is refused rather
//! than guessed at.

use super::store::{args, Dialect, Store};

/// Each entry takes the schema from version `i` to `i + 1`. Append only; never edit one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: runs, the nodes each run holds, jobs, one result per job per node, known nodes.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        command TEXT NOT NULL,
        files TEXT NOT NULL,
        catalogs TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at INTEGER,
        status TEXT NOT NULL,
        exit_code INTEGER,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        lock_path TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        summary TEXT
    );
    CREATE INDEX runs_status ON runs(status);
    CREATE TABLE run_nodes (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        node TEXT NOT NULL,
        address TEXT NOT NULL,
        outcome TEXT NOT NULL DEFAULT 'pending',
        error TEXT,
        PRIMARY KEY (run_id, node)
    );
    CREATE INDEX run_nodes_node ON run_nodes(node);
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        parent_id TEXT NOT NULL,
        parent_name TEXT,
        parent_sha3 TEXT NOT NULL,
        name TEXT NOT NULL,
        verb TEXT NOT NULL,
        definition TEXT NOT NULL,
        targets TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (run_id, seq)
    );
    CREATE TABLE results (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        node TEXT NOT NULL,
        status TEXT NOT NULL,
        fingerprint TEXT,
        info TEXT,
        reason TEXT,
        exit_code INTEGER,
        stdout TEXT NOT NULL DEFAULT '',
        stdout_cut INTEGER NOT NULL DEFAULT 0,
        stderr TEXT NOT NULL DEFAULT '',
        stderr_cut INTEGER NOT NULL DEFAULT 0,
        started_at INTEGER,
        finished_at INTEGER,
        execution_ms INTEGER,
        roundtrip_ms INTEGER,
        PRIMARY KEY (job_id, node)
    );
    CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        arch TEXT NOT NULL DEFAULT '',
        os TEXT NOT NULL DEFAULT '',
        kernel TEXT NOT NULL DEFAULT '',
        hostname TEXT NOT NULL DEFAULT '',
        executor_sha3 TEXT NOT NULL DEFAULT '',
        last_seen INTEGER,
        last_run TEXT
    );",
    // 2: a run's mode (`run`, or `plan` for --plan), and the batch (from 1) each node of a
    // --serial run ran in.
    "ALTER TABLE runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'run';
    ALTER TABLE run_nodes ADD COLUMN batch INTEGER;",
];

/// Brings the database to the newest schema; returns the version it was at.
///
/// SQLite keeps the version in `PRAGMA user_version`; PostgreSQL in a one-row table
/// `schema_version`, and its migrations run under a transaction-scoped advisory lock, so
/// two operators starting at once migrate once.
pub(crate) fn migrate(store: &Store) -> Result<u32, String> {
    let newest = MIGRATIONS.len() as u32;
    let at = version(store).map_err(|e| e.to_string())?;
    if at > newest {
        return Err(format!("it was written by a newer director (schema {at}; this one knows up to {newest})"));
    }
    if at == newest {
        return Ok(at);
    }
    let tx = store.begin().map_err(|e| e.to_string())?;
    if tx.dialect() == Dialect::Postgres {
        tx.exec("SELECT pg_advisory_xact_lock(?1)", args![MIGRATION_LOCK]).map_err(|e| e.to_string())?;
        tx.batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)").map_err(|e| e.to_string())?;
    }
    // Another process may have migrated while we waited for the write lock.
    let again = version(&tx).map_err(|e| e.to_string())?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(again as usize) {
        tx.batch(sql).map_err(|e| format!("migration {} failed: {e}", i + 1))?;
        if tx.dialect() == Dialect::Postgres {
            tx.batch(POSTGRES_AFTER.get(i).copied().unwrap_or_default())
                .map_err(|e| format!("migration {} failed: {e}", i + 1))?;
        }
    }
    match tx.dialect() {
        Dialect::Sqlite => tx.batch(&format!("PRAGMA user_version = {newest}")),
        Dialect::Postgres => tx
            .batch("DELETE FROM schema_version")
            .and_then(|()| tx.exec("INSERT INTO schema_version (version) VALUES (?1)", args![newest]).map(drop)),
    }
    .map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())?;
    Ok(at)
}

/// The key of the advisory lock PostgreSQL migrations hold (any constant of director's).
const MIGRATION_LOCK: i64 = 0x6469_7265_6374_6f72; // "director"

/// What PostgreSQL needs after migration `i` that SQLite has built in: a `rowid` (the order
/// rows were written in) on the tables whose listings follow it.
const POSTGRES_AFTER: &[&str] = &["ALTER TABLE runs ADD COLUMN rowid BIGSERIAL;
    ALTER TABLE run_nodes ADD COLUMN rowid BIGSERIAL;"];

fn version(store: &Store) -> super::store::Result<u32> {
    let v: i64 = match store.dialect() {
        Dialect::Sqlite => store.one("PRAGMA user_version", &[])?,
        Dialect::Postgres => {
            let exists: bool = store.one("SELECT to_regclass('schema_version') IS NOT NULL", &[])?;
            if !exists {
                return Ok(0);
            }
            store.one::<Option<i64>>("SELECT max(version) FROM schema_version", &[])?.unwrap_or(0)
        }
    };
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}
