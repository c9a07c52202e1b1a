//! The history's SQL schema and its migrations.
//!
//! `PRAGMA user_version` holds the number of migrations applied; [`migrate`] applies the
//! missing ones in one transaction, so a database is always at one whole version. A database
//! written by a newer director (a higher version than [`MIGRATIONS`] knows) is refused rather
//! than guessed at.

use rusqlite::Connection;

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
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, String> {
    let at: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    let newest = MIGRATIONS.len() as u32;
    if at > newest {
        return Err(format!("it was written by a newer director (schema {at}; this one knows up to {newest})"));
    }
    if at == newest {
        return Ok(at);
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| e.to_string())?;
    // Another process may have migrated while we waited for the write lock.
    let again: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(again as usize) {
        tx.execute_batch(sql).map_err(|e| format!("migration {} failed: {e}", i + 1))?;
    }
    tx.pragma_update(None, "user_version", newest).map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())?;
    Ok(at)
}
