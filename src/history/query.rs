//! Reading the history: what `manage` shows and what `--retry-failed` needs.
//!
//! Every function returns plain rows; times are [`When`]s, which a table shows as local
//! `YYYY-MM-DD HH:MM:SS` and JSON as RFC 3339 with the local offset. The frontends decide how
//! the rest looks. An id may be given whole, as a unique prefix, or as
//! `last`; anything else is an input error naming what was looked for.

use super::store::{args, FromValue, Row, Value};
use super::{History, ResultStatus, RunStatus};
use crate::error::Error;
use crate::event::{RunKind, RunMode};
use serde::Serialize;

/// The SQL of a time column: its milliseconds since the epoch, read as a [`When`].
pub(crate) fn time(col: &str) -> String {
    col.to_string()
}

/// A time the history recorded (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct When(pub i64);

impl When {
    fn local(self) -> Option<jiff::Zoned> {
        let t = jiff::Timestamp::from_millisecond(self.0).ok()?;
        Some(t.to_zoned(jiff::tz::TimeZone::system()))
    }

    /// RFC 3339 with the local offset: `2026-11-30T03:02:03+01:00`.
    pub fn rfc3339(self) -> String {
        self.local().map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()).unwrap_or_default()
    }
}

/// As tables show it: local `2026-11-30 03:02:03`.
impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.local() {
            Some(z) => write!(f, "{}", z.strftime("%Y-%m-%d %H:%M:%S")),
            None => Ok(()),
        }
    }
}

impl Serialize for When {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl FromValue for When {
    fn from_value(value: &Value) -> Result<Self, String> {
        i64::from_value(value).map(When)
    }
}

/// No `what` (run, job) has an id starting with `given`.
pub(crate) fn not_found(what: &str, given: &str, location: &super::Location) -> Error {
    Error::input(format!("no {what} has an id starting with `{given}` in {location}")).hint(format!(
        "`director manage --list-{what}s` shows them; an id, a unique prefix of one, or `last` is accepted"
    ))
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub kind: RunKind,
    /// `run`, or `plan` for a `--plan`.
    pub mode: RunMode,
    pub command: String,
    pub status: RunStatus,
    pub started: When,
    pub ended: Option<When>,
    pub duration_ms: Option<i64>,
    pub exit_code: Option<i64>,
    pub pid: i64,
    pub host: String,
    pub nodes: i64,
    pub nodes_ok: i64,
    pub nodes_failed: i64,
    pub nodes_unreachable: i64,
    /// Not attempted: a batch before them failed.
    pub nodes_skipped: i64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunNode {
    pub node: String,
    pub address: String,
    pub outcome: String,
    pub error: Option<String>,
    /// `--serial`: the batch it ran in, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunInfo {
    #[serde(flatten)]
    pub run: RunRow,
    pub files: Vec<String>,
    pub catalogs: Vec<String>,
    pub jobs: i64,
    pub summary: Option<serde_json::Value>,
    pub node_outcomes: Vec<RunNode>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct JobRow {
    pub id: String,
    pub run: String,
    pub parent_name: String,
    pub name: String,
    pub verb: String,
    /// Mean execution time over the nodes that finished it, in seconds.
    pub execution_time: Option<f64>,
    pub processing: bool,
    pub success: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    pub node: String,
    pub status: ResultStatus,
    pub fingerprint: Option<String>,
    pub info: Option<String>,
    pub reason: Option<String>,
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stdout_cut: i64,
    pub stderr: String,
    pub stderr_cut: i64,
    pub started: Option<When>,
    pub finished: Option<When>,
    pub execution_ms: Option<i64>,
    pub roundtrip_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    pub id: String,
    pub run: String,
    pub seq: i64,
    pub parent_id: String,
    pub parent_name: Option<String>,
    pub parent_sha3: String,
    pub name: String,
    pub verb: String,
    pub definition: serde_json::Value,
    pub targets: Vec<String>,
    pub created: When,
    pub results: Vec<ResultRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResultBrief {
    pub job_id: String,
    pub seq: i64,
    pub job: String,
    pub node: String,
    pub status: ResultStatus,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub execution_ms: Option<i64>,
}

/// How a node ended in the last run that held it.
#[derive(Debug, Clone, Serialize)]
pub struct LastOutcome {
    pub node: String,
    pub run: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub address: String,
    pub arch: String,
    pub os: String,
    pub kernel: String,
    pub hostname: String,
    pub executor_sha3: String,
    pub last_seen: Option<When>,
    pub last_run: Option<String>,
}

/// What `--retry-failed` runs again.
#[derive(Debug, Clone)]
pub(crate) struct RetrySet {
    pub run: String,
    /// The nodes that did not end ok.
    pub nodes: Vec<String>,
    pub files: Vec<String>,
    pub catalogs: Vec<String>,
    /// A run, or a plan of one: retrying a plan for real would change nodes it never touched.
    pub mode: RunMode,
}

/// `--list-jobs --filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobFilter {
    Success,
    Failed,
    Processing,
}

fn run_select() -> String {
    format!(
        "SELECT r.id, r.kind, r.command, r.status, {}, CASE WHEN r.ended_at IS NULL THEN NULL ELSE {} END, r.ended_at - r.started_at, r.exit_code, r.pid, r.host,
           (SELECT count(*) FROM run_nodes n WHERE n.run_id = r.id),
           (SELECT count(*) FROM run_nodes n WHERE n.run_id = r.id AND n.outcome = 'ok'),
           (SELECT count(*) FROM run_nodes n WHERE n.run_id = r.id AND n.outcome IN ('failed', 'cancelled', 'abandoned')),
           (SELECT count(*) FROM run_nodes n WHERE n.run_id = r.id AND n.outcome = 'unreachable'),
           r.files, r.catalogs, r.summary, r.mode,
           (SELECT count(*) FROM run_nodes n WHERE n.run_id = r.id AND n.outcome = 'skipped')
         FROM runs r",
        time("r.started_at"),
        time("r.ended_at")
    )
}

fn run_row(r: &Row) -> super::store::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        command: r.get(2)?,
        status: r.get(3)?,
        started: r.get(4)?,
        ended: r.get(5)?,
        duration_ms: r.get(6)?,
        exit_code: r.get(7)?,
        pid: r.get(8)?,
        host: r.get(9)?,
        nodes: r.get(10)?,
        nodes_ok: r.get(11)?,
        nodes_failed: r.get(12)?,
        nodes_unreachable: r.get(13)?,
        nodes_skipped: r.get(18)?,
        mode: r.get(17)?,
    })
}

/// What `last` or an id prefix named.
pub(crate) enum Found {
    One(String),
    /// The table has no rows at all.
    Empty,
}

impl History {
    fn q<T>(&self, r: super::store::Result<T>) -> Result<T, Error> {
        r.map_err(|e| self.err(e))
    }

    /// Every row of `sql`, each read by `read`.
    fn select<T>(
        &self,
        sql: &str,
        args: &[Value],
        read: impl Fn(&Row) -> super::store::Result<T>,
    ) -> Result<Vec<T>, Error> {
        let rows = self.q(self.store.rows(sql, args))?;
        self.q(rows.iter().map(read).collect())
    }

    /// The one row of `sql` (a missing one is an error: callers ask for ids they found).
    fn select_one<T>(
        &self,
        sql: &str,
        args: &[Value],
        read: impl Fn(&Row) -> super::store::Result<T>,
    ) -> Result<T, Error> {
        let row = self.q(self.store.row(sql, args))?;
        let row = row.ok_or_else(|| self.err(super::store::StoreError(format!("no row from `{sql}`"))))?;
        self.q(read(&row))
    }

    /// Resolves `last`, a whole id or a unique prefix in `table` (`runs` or `jobs`).
    pub(crate) fn find(&self, table: &str, what: &str, given: &str) -> Result<Found, Error> {
        // The last job is the last one a run (not a --plan) made, while there is one.
        let order = if table == "runs" {
            "started_at DESC"
        } else {
            "(SELECT r.mode FROM runs r WHERE r.id = jobs.run_id) = 'plan', created_at DESC, seq DESC"
        };
        let count: i64 = self.q(self.store.one(&format!("SELECT count(*) FROM {table}"), &[]))?;
        if count == 0 {
            return Ok(Found::Empty);
        }
        if given == "last" {
            let id: String =
                self.q(self.store.one(&format!("SELECT id FROM {table} ORDER BY {order} LIMIT 1"), &[]))?;
            return Ok(Found::One(id));
        }
        let escaped = given.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let ids: Vec<String> = self.select(
            &format!("SELECT id FROM {table} WHERE id LIKE ?1 || '%' ESCAPE '\\' ORDER BY {order} LIMIT 6"),
            args![escaped],
            |r| r.get(0),
        )?;
        match ids.len() {
            0 => Err(not_found(what, given, &self.location)),
            1 => Ok(Found::One(ids[0].clone())),
            _ => {
                let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
                Err(Error::input(format!(
                    "`{given}` starts the ids of several {what}s: {}{}",
                    shown.join(", "),
                    if ids.len() > 5 { ", …" } else { "" }
                ))
                .hint("give more characters of the id"))
            }
        }
    }

    pub(crate) fn list_runs(&self) -> Result<Vec<RunRow>, Error> {
        self.select(&format!("{} ORDER BY r.started_at DESC, r.rowid DESC", run_select()), &[], run_row)
    }

    pub(crate) fn run_info(&self, id: &str) -> Result<RunInfo, Error> {
        let (run, files, catalogs, summary): (RunRow, String, String, Option<String>) =
            self.select_one(&format!("{} WHERE r.id = ?1", run_select()), args![id], |r| {
                Ok((run_row(r)?, r.get(14)?, r.get(15)?, r.get(16)?))
            })?;
        let jobs: i64 = self.q(self.store.one("SELECT count(*) FROM jobs WHERE run_id = ?1", args![id]))?;
        let nodes = self.select(
            "SELECT node, address, outcome, error, batch FROM run_nodes WHERE run_id = ?1 ORDER BY rowid",
            args![id],
            |r| {
                Ok(RunNode {
                    node: r.get(0)?,
                    address: r.get(1)?,
                    outcome: r.get(2)?,
                    error: r.get(3)?,
                    batch: r.get(4)?,
                })
            },
        )?;
        Ok(RunInfo {
            run,
            files: serde_json::from_str(&files).unwrap_or_default(),
            catalogs: serde_json::from_str(&catalogs).unwrap_or_default(),
            jobs,
            summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
            node_outcomes: nodes,
        })
    }

    pub(crate) fn list_jobs(&self, filter: Option<JobFilter>) -> Result<Vec<JobRow>, Error> {
        let all = self.select(
            "SELECT j.id, j.run_id, coalesce(j.parent_name, j.parent_id), j.name, j.verb,
               (SELECT CAST(avg(execution_ms) AS DOUBLE PRECISION) FROM results s WHERE s.job_id = j.id AND s.execution_ms IS NOT NULL),
               (SELECT count(*) FROM results s WHERE s.job_id = j.id AND s.status = 'running') > 0
                 OR (r.status = 'running' AND (SELECT count(*) FROM results s WHERE s.job_id = j.id) < json_array_length(j.targets)),
               (SELECT count(*) FROM results s WHERE s.job_id = j.id AND s.status IN ('ok', 'cached')),
               (SELECT count(*) FROM results s WHERE s.job_id = j.id AND s.status IN ('failed', 'timed_out', 'unreachable', 'cancelled', 'abandoned'))
             FROM jobs j JOIN runs r ON r.id = j.run_id ORDER BY r.started_at DESC, r.rowid DESC, j.seq",
            &[],
            |r| {
                Ok(JobRow {
                    id: r.get(0)?,
                    run: r.get(1)?,
                    parent_name: r.get(2)?,
                    name: r.get(3)?,
                    verb: r.get(4)?,
                    execution_time: r.get::<Option<f64>>(5)?.map(|ms| ms / 1000.0),
                    processing: r.get(6)?,
                    success: r.get(7)?,
                    failed: r.get(8)?,
                })
            },
        )?;
        Ok(all
            .into_iter()
            .filter(|j| match filter {
                None => true,
                Some(JobFilter::Success) => !j.processing && j.failed == 0 && j.success > 0,
                Some(JobFilter::Failed) => j.failed > 0,
                Some(JobFilter::Processing) => j.processing,
            })
            .collect())
    }

    pub(crate) fn job_info(&self, id: &str) -> Result<JobInfo, Error> {
        let mut info = self.select_one(
            &format!("SELECT id, run_id, seq, parent_id, parent_name, parent_sha3, name, verb, definition, targets, {} FROM jobs WHERE id = ?1", time("created_at")),
            args![id],
            |r| {
                Ok(JobInfo {
                    id: r.get(0)?,
                    run: r.get(1)?,
                    seq: r.get(2)?,
                    parent_id: r.get(3)?,
                    parent_name: r.get(4)?,
                    parent_sha3: r.get(5)?,
                    name: r.get(6)?,
                    verb: r.get(7)?,
                    definition: serde_json::from_str(&r.get::<String>(8)?).unwrap_or(serde_json::Value::Null),
                    targets: serde_json::from_str(&r.get::<String>(9)?).unwrap_or_default(),
                    created: r.get(10)?,
                    results: Vec::new(),
                })
            },
        )?;
        info.results = self.select(
            &format!(
                "SELECT node, status, fingerprint, info, reason, exit_code, stdout, stdout_cut, stderr, stderr_cut,
               CASE WHEN started_at IS NULL THEN NULL ELSE {} END, CASE WHEN finished_at IS NULL THEN NULL ELSE {} END, execution_ms, roundtrip_ms
             FROM results WHERE job_id = ?1 ORDER BY node",
                time("started_at"),
                time("finished_at")
            ),
            args![id],
            |r| {
                Ok(ResultRow {
                    node: r.get(0)?,
                    status: r.get(1)?,
                    fingerprint: r.get(2)?,
                    info: r.get(3)?,
                    reason: r.get(4)?,
                    exit_code: r.get(5)?,
                    stdout: r.get(6)?,
                    stdout_cut: r.get(7)?,
                    stderr: r.get(8)?,
                    stderr_cut: r.get(9)?,
                    started: r.get(10)?,
                    finished: r.get(11)?,
                    execution_ms: r.get(12)?,
                    roundtrip_ms: r.get(13)?,
                })
            },
        )?;
        Ok(info)
    }

    /// Every job with its results, for `--export-jobs`.
    pub(crate) fn all_jobs(&self) -> Result<Vec<JobInfo>, Error> {
        let ids: Vec<String> = self.select("SELECT id FROM jobs ORDER BY created_at, seq", &[], |r| r.get(0))?;
        ids.iter().map(|id| self.job_info(id)).collect()
    }

    pub(crate) fn list_nodes(&self) -> Result<Vec<NodeRow>, Error> {
        self.select(
            &format!(
                "SELECT name, address, arch, os, kernel, hostname, executor_sha3, CASE WHEN last_seen IS NULL THEN NULL ELSE {} END, last_run FROM nodes ORDER BY name",
                time("last_seen")
            ),
            &[],
            |r| {
                Ok(NodeRow {
                    name: r.get(0)?,
                    address: r.get(1)?,
                    arch: r.get(2)?,
                    os: r.get(3)?,
                    kernel: r.get(4)?,
                    hostname: r.get(5)?,
                    executor_sha3: r.get(6)?,
                    last_seen: r.get(7)?,
                    last_run: r.get(8)?,
                })
            },
        )
    }

    /// Deletes the jobs (and results) of every run that is not running, and those runs;
    /// returns (jobs, runs) deleted. A running run keeps its record: it is the lock.
    pub(crate) fn purge_jobs(&mut self) -> Result<(u64, u64), Error> {
        let e = |e| super::db_error(&self.location, e);
        let tx = self.store.begin().map_err(e)?;
        let done = "SELECT id FROM runs WHERE status <> 'running'";
        tx.exec(&format!("DELETE FROM results WHERE job_id IN (SELECT id FROM jobs WHERE run_id IN ({done}))"), &[])
            .map_err(e)?;
        let jobs = tx.exec(&format!("DELETE FROM jobs WHERE run_id IN ({done})"), &[]).map_err(e)?;
        tx.exec(&format!("DELETE FROM run_nodes WHERE run_id IN ({done})"), &[]).map_err(e)?;
        let runs = tx.exec("DELETE FROM runs WHERE status <> 'running'", &[]).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok((jobs, runs))
    }

    pub(crate) fn purge_nodes(&mut self) -> Result<u64, Error> {
        self.q(self.store.exec("DELETE FROM nodes", &[]))
    }

    /// The nodes of run `id` that did not end ok: failed, unreachable, cancelled or never
    /// reported. With the run's files and catalogs, for `--retry-failed`.
    pub(crate) fn retry_set(&self, id: &str) -> Result<RetrySet, Error> {
        let (files, catalogs, mode): (String, String, RunMode) =
            self.select_one("SELECT files, catalogs, mode FROM runs WHERE id = ?1", args![id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        let nodes: Vec<String> = self.select(
            "SELECT node FROM run_nodes WHERE run_id = ?1 AND outcome <> 'ok' ORDER BY rowid",
            args![id],
            |r| r.get(0),
        )?;
        Ok(RetrySet {
            run: id.to_string(),
            nodes,
            files: serde_json::from_str(&files).unwrap_or_default(),
            catalogs: serde_json::from_str(&catalogs).unwrap_or_default(),
            mode,
        })
    }

    /// Every result of run `id` (of `node` only, when given), in job order, for browsing.
    pub(crate) fn run_results(&self, id: &str, node: Option<&str>) -> Result<Vec<ResultBrief>, Error> {
        self.select(
            "SELECT j.id, j.seq, j.name, r.node, r.status, r.exit_code, r.reason, r.execution_ms
             FROM results r JOIN jobs j ON j.id = r.job_id
             WHERE j.run_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR r.node = ?2) ORDER BY j.seq, r.node",
            args![id, node],
            |r| {
                Ok(ResultBrief {
                    job_id: r.get(0)?,
                    seq: r.get(1)?,
                    job: r.get(2)?,
                    node: r.get(3)?,
                    status: r.get(4)?,
                    exit_code: r.get(5)?,
                    reason: r.get(6)?,
                    execution_ms: r.get(7)?,
                })
            },
        )
    }

    /// Each node's outcome in the latest run that held it.
    pub(crate) fn last_outcomes(&self) -> Result<Vec<LastOutcome>, Error> {
        self.select(
            "SELECT n.node, n.run_id, n.outcome FROM run_nodes n JOIN runs r ON r.id = n.run_id
             WHERE r.started_at = (SELECT MAX(r2.started_at) FROM runs r2 JOIN run_nodes n2 ON n2.run_id = r2.id WHERE n2.node = n.node)
             ORDER BY n.node",
            &[],
            |r| Ok(LastOutcome { node: r.get(0)?, run: r.get(1)?, outcome: r.get(2)? }),
        )
    }

    /// The kind of run `id` (`orchestrate`, `exec`, `bootstrap`), if it exists.
    pub(crate) fn run_kind(&self, id: &str) -> Result<Option<RunKind>, Error> {
        let row = self.q(self.store.row("SELECT kind FROM runs WHERE id = ?1", args![id]))?;
        self.q(row.map(|r| r.get(0)).transpose())
    }
}
