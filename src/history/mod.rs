//! The run history: the local record of what ran where, and the source of truth about runs.
//!
//! One SQLite database (rusqlite, bundled), `~/.local/state/director/history.db` by default,
//! in WAL mode so a TUI reading it and a CLI writing it do not block each other. It owns the
//! schema ([`schema`]), the start of a run (which takes the run's nodes: see [`History::begin`]),
//! the writing of a run's events ([`recorder`]) and the reading done by `manage` and
//! `--retry-failed` ([`query`]). It never prints and never sees clap types.
//!
//! Locks: a run holds its nodes while its row says `running`. Its process also holds an
//! exclusive `flock` on `locks/<run>.lock` beside the database; the kernel drops that lock
//! when the process dies however it dies, so a `running` row whose lock file can be locked
//! by someone else belongs to a dead process: it is shown, and recorded, as `abandoned`.

pub(crate) mod query;
pub(crate) mod recorder;
pub(crate) mod schema;
pub(crate) mod status;

pub(crate) use status::{ResultStatus, RunStatus};

use crate::error::{exit, Error};
use crate::event::RunKind;
use rusqlite::{params, Connection, OptionalExtension};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default database path: `$XDG_STATE_HOME/director/history.db`, else
/// `~/.local/state/director/history.db`.
pub(crate) fn default_path() -> PathBuf {
    crate::paths::state_dir().join("history.db")
}

/// The histories director serves, by the scheme a `--history` names them with.
const SCHEMES: &[&str] = &["sqlite"];

/// Bytes of the history's key ([`History::seal_key`]).
const SEAL_KEY_BYTES: usize = 32;

/// The scheme of a value written as a URL (`postgres://…`, `sqlite:…`), if it is one: a
/// letter, then letters, digits, `+`, `-` or `.`, then `:` (and for a scheme other than
/// sqlite, `//`). A path such as `./a:b` or `C:x` is not.
pub(crate) fn scheme(given: &str) -> Option<&str> {
    let (scheme, rest) = given.split_once(':')?;
    let mut chars = scheme.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && scheme.len() > 1;
    (well_formed && (rest.starts_with("//") || SCHEMES.contains(&scheme))).then_some(scheme)
}

/// Where the history is, from `--history`, `DIRECTOR_HISTORY` or the settings file: a path,
/// or `sqlite:PATH` (`sqlite:///abs/path` too). A URL of a kind director does not serve is
/// an input error, never a directory named after its scheme.
pub(crate) fn location(given: &Path) -> Result<PathBuf, Error> {
    let text = given.to_string_lossy();
    match scheme(&text) {
        None => Ok(given.to_path_buf()),
        Some("sqlite") => {
            let path = &text["sqlite:".len()..];
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(
                    Error::input("the history `sqlite:` names no file").hint("write sqlite:PATH, or the path alone")
                );
            }
            Ok(crate::paths::expand_home(path))
        }
        Some(other) => Err(Error::input(format!(
            "the history `{text}` is a `{other}:` URL, and director keeps its history only in SQLite for now"
        ))
        .hint(format!(
            "give a file path, or {}:PATH (PostgreSQL histories are not served yet)",
            SCHEMES.join(":PATH, ")
        ))),
    }
}

/// Milliseconds since the epoch, the unit of every timestamp in the database.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A job of a run as the history keeps it.
#[derive(Debug, Clone)]
pub(crate) struct JobSpec {
    pub seq: usize,
    pub entry: usize,
    pub parent_name: Option<String>,
    pub parent_sha3: String,
    /// What the job is called: its `name`, or its verb and arguments.
    pub name: String,
    pub verb: String,
    /// The job as written in its file, as JSON.
    pub definition: String,
    /// Names of the nodes it runs on.
    pub targets: Vec<String>,
}

/// What a run is, written when it starts.
#[derive(Debug, Clone)]
pub(crate) struct RunSpec {
    pub id: String,
    /// `orchestrate`, `exec` or `bootstrap`.
    pub kind: RunKind,
    /// `run`, or `plan` for `--plan`.
    pub mode: crate::event::RunMode,
    pub command: String,
    pub files: Vec<String>,
    pub catalogs: Vec<String>,
    /// Name and address of each node the run holds.
    pub nodes: Vec<(String, String)>,
    pub jobs: Vec<JobSpec>,
}

impl RunSpec {
    /// The id of job `seq` of this run: short, unique, and a stable function of both.
    pub(crate) fn job_id(&self, seq: usize) -> String {
        job_id(&self.id, seq)
    }

    pub(crate) fn parent_id(&self, entry: usize) -> String {
        hash_id(&format!("{}/entry/{entry}", self.id))
    }
}

/// The id of job `seq` of run `run` in the history.
pub(crate) fn job_id(run: &str, seq: usize) -> String {
    hash_id(&format!("{run}/job/{seq}"))
}

fn hash_id(text: &str) -> String {
    use sha3::Digest;
    crate::verb::source::hex(&sha3::Sha3_224::digest(text.as_bytes()))[..16].to_string()
}

/// How a run that finds its nodes held behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contention {
    /// Refuse with exit 4.
    Refuse,
    /// Wait until the holder is gone.
    Wait,
    /// Take nothing: a run of QUEUESENTINEL jobs only, whose purpose is to reach the nodes
    /// another run holds and drain its queues.
    Share,
}

/// The run that holds a node another run wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub run: String,
    pub command: String,
    pub started: String,
    pub pid: i64,
    pub nodes: Vec<String>,
}

/// A started run: its process holds the lock file for as long as this lives.
pub(crate) struct RunGuard {
    lock_path: PathBuf,
    _lock: File,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

pub(crate) struct History {
    pub path: PathBuf,
    conn: Connection,
}

/// The history cannot be opened: the path the user chose is unusable, so bad input (exit 2),
/// found before any node is contacted.
fn open_error(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::input(format!("cannot open the run history {}: {why}", path.display()))
        .hint("choose another file with --history PATH (or DIRECTOR_HISTORY, or `history:` in the config file)")
}

fn db_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::internal(format!("the run history {} failed: {e}", path.display()))
}

impl History {
    /// Opens (creating it and its directory if needed) and migrates the database.
    pub(crate) fn open(path: &Path) -> Result<History, Error> {
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if path.is_dir() {
            return Err(open_error(path, "it is a directory"));
        }
        if let Some(dir) = path.parent() {
            crate::private::create_dir_all(dir).map_err(|e| open_error(path, crate::error::io_reason(&e)))?;
        }
        // SQLite creates the file with the umask's mode: create it private first. Its -wal
        // and -shm files take the database's mode.
        crate::private::touch(path).map_err(|e| open_error(path, crate::error::io_reason(&e)))?;
        let mut conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        configure(&conn).map_err(|e| open_error(path, e))?;
        schema::migrate(&mut conn).map_err(|e| open_error(path, e))?;
        Ok(History { path: path.clone(), conn })
    }

    /// The key fingerprints holding a secret are hashed with
    /// ([`crate::plan::fingerprint::Seal`]): 32 random bytes in `<history>.key` beside the
    /// database, mode 0600, made by the first run that opens this history. Whoever holds the
    /// history holds the key; without it, its hashes of secrets cannot be checked against
    /// guesses.
    pub(crate) fn seal_key(&self) -> Result<std::sync::Arc<[u8]>, Error> {
        let mut name = self.path.clone().into_os_string();
        name.push(".key");
        let path = PathBuf::from(name);
        let failed = |e: std::io::Error| {
            Error::input(format!("cannot use the history's key {}: {}", path.display(), crate::error::io_reason(&e)))
        };
        if !path.exists() {
            let mut key = [0u8; SEAL_KEY_BYTES];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").map_err(failed)?, &mut key)
                .map_err(failed)?;
            crate::private::create_once(&path, &key).map_err(failed)?;
        }
        let key = std::fs::read(&path).map_err(failed)?;
        if key.len() != SEAL_KEY_BYTES {
            return Err(Error::input(format!(
                "the history's key {} is not a key: it has {} bytes, not {SEAL_KEY_BYTES}",
                path.display(),
                key.len()
            ))
            .hint("it was changed by something else; remove it to make a new one (jobs holding secrets then run again once)"));
        }
        Ok(key.into())
    }

    /// Opens the database only if it exists: reading an empty history creates nothing.
    pub(crate) fn open_existing(path: &Path) -> Result<Option<History>, Error> {
        if !path.exists() {
            return Ok(None);
        }
        Self::open(path).map(Some)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    fn locks_dir(&self) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join("locks")
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        db_error(&self.path, e)
    }

    /// Starts a run: takes its nodes and records the run, its nodes and its jobs, all in one
    /// transaction, so two runs can never both take a node. A holder whose process is dead is
    /// marked abandoned and its nodes taken over. With [`Contention::Wait`], `waiting` is
    /// called once with the holder and the attempt repeats until the nodes are free.
    pub(crate) fn begin(
        &mut self,
        spec: &RunSpec,
        contention: Contention,
        waiting: &mut dyn FnMut(&Holder),
    ) -> Result<RunGuard, Error> {
        let locks = self.locks_dir();
        crate::private::create_dir_all(&locks).map_err(|e| open_error(&self.path, crate::error::io_reason(&e)))?;
        let lock_path = locks.join(format!("{}.lock", spec.id));
        let lock = File::create(&lock_path).map_err(|e| open_error(&self.path, crate::error::io_reason(&e)))?;
        lock.lock().map_err(|e| open_error(&self.path, e))?;
        let guard = RunGuard { lock_path: lock_path.clone(), _lock: lock };
        let mut told = false;
        loop {
            match self.try_begin(spec, &lock_path, contention != Contention::Share)? {
                None => return Ok(guard),
                Some(holder) => match contention {
                    Contention::Refuse => {
                        return Err(Error {
                            message: format!(
                                "{} held by run {} (`{}`), running since {} (pid {})",
                                held_nodes(&holder.nodes),
                                holder.run,
                                holder.command,
                                holder.started,
                                holder.pid
                            ),
                            hint: Some(format!(
                                "wait for it with --wait, or stop it with `director manage --cancel {}`",
                                holder.run
                            )),
                            code: exit::LOCKED,
                        })
                    }
                    Contention::Wait | Contention::Share => {
                        if !told {
                            waiting(&holder);
                            told = true;
                        }
                        std::thread::sleep(Duration::from_millis(250));
                    }
                },
            }
        }
    }

    fn try_begin(&mut self, spec: &RunSpec, lock_path: &Path, exclusive: bool) -> Result<Option<Holder>, Error> {
        let path = self.path.clone();
        let err = |e| db_error(&path, e);
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        let wanted: Vec<&str> = spec.nodes.iter().map(|(n, _)| n.as_str()).collect();
        let holders = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT r.id, r.command, {}, r.pid, r.lock_path, n.node
                     FROM runs r JOIN run_nodes n ON n.run_id = r.id WHERE r.status = 'running' ORDER BY r.started_at, n.node",
                    query::time("r.started_at")
                ))
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, query::When>(2)?.rfc3339(),
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })
                .map_err(err)?;
            let mut holders: Vec<(Holder, String)> = Vec::new();
            for row in rows {
                let (run, command, started, pid, lock, node) = row.map_err(err)?;
                if !exclusive || !wanted.contains(&node.as_str()) {
                    continue;
                }
                match holders.iter_mut().find(|(h, _)| h.run == run) {
                    Some((h, _)) => h.nodes.push(node),
                    None => holders.push((Holder { run, command, started, pid, nodes: vec![node] }, lock)),
                }
            }
            holders
        };
        for (holder, lock) in holders {
            if owner_alive(Path::new(&lock)) {
                return Ok(Some(holder));
            }
            mark_abandoned(&tx, &holder.run).map_err(err)?;
        }
        let now = now_ms();
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_default();
        tx.execute(
            "INSERT INTO runs (id, kind, command, files, catalogs, started_at, status, pid, host, lock_path, mode) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8, ?9, ?10)",
            params![spec.id, spec.kind, spec.command, json(&spec.files), json(&spec.catalogs), now, std::process::id(), operator_host(), lock_path.display().to_string(), spec.mode],
        )
        .map_err(err)?;
        for (node, address) in &spec.nodes {
            tx.execute(
                "INSERT INTO run_nodes (run_id, node, address) VALUES (?1, ?2, ?3)",
                params![spec.id, node, address],
            )
            .map_err(err)?;
        }
        for job in &spec.jobs {
            tx.execute(
                "INSERT INTO jobs (id, run_id, seq, parent_id, parent_name, parent_sha3, name, verb, definition, targets, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    spec.job_id(job.seq),
                    spec.id,
                    job.seq as i64,
                    spec.parent_id(job.entry),
                    job.parent_name,
                    job.parent_sha3,
                    job.name,
                    job.verb,
                    job.definition,
                    json(&job.targets),
                    now
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(None)
    }

    /// Marks every `running` run whose process is gone as abandoned; returns their ids.
    pub(crate) fn sweep_abandoned(&mut self) -> Result<Vec<String>, Error> {
        let running: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id, lock_path FROM runs WHERE status = 'running'")
                .map_err(|e| self.err(e))?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
        };
        let mut gone = Vec::new();
        for (id, lock) in running {
            if !owner_alive(Path::new(&lock)) {
                gone.push(id);
            }
        }
        if !gone.is_empty() {
            let path = self.path.clone();
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| db_error(&path, e))?;
            for id in &gone {
                mark_abandoned(&tx, id).map_err(|e| db_error(&path, e))?;
            }
            tx.commit().map_err(|e| db_error(&path, e))?;
        }
        Ok(gone)
    }

    /// Asks run `id` to cancel. What happened is returned for the caller to say.
    pub(crate) fn request_cancel(&mut self, id: &str) -> Result<CancelState, Error> {
        let row: Option<(RunStatus, String)> = self
            .conn
            .query_row("SELECT status, lock_path FROM runs WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((status, lock)) = row else { return Ok(CancelState::Unknown) };
        if status != RunStatus::Running {
            return Ok(CancelState::NotRunning(status));
        }
        if !owner_alive(Path::new(&lock)) {
            let path = self.path.clone();
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| db_error(&path, e))?;
            mark_abandoned(&tx, id).map_err(|e| db_error(&path, e))?;
            tx.execute("UPDATE runs SET status = 'cancelled' WHERE id = ?1", [id]).map_err(|e| db_error(&path, e))?;
            tx.commit().map_err(|e| db_error(&path, e))?;
            return Ok(CancelState::OwnerGone);
        }
        self.conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?1", [id]).map_err(|e| self.err(e))?;
        Ok(CancelState::Requested)
    }

    /// The status of run `id` now.
    pub(crate) fn status(&self, id: &str) -> Result<Option<RunStatus>, Error> {
        self.conn
            .query_row("SELECT status FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }
}

/// What `manage --cancel` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CancelState {
    Unknown,
    NotRunning(RunStatus),
    /// The run's process was gone: the run is now recorded cancelled.
    OwnerGone,
    /// The run's process was asked; it kills its jobs and records the run itself.
    Requested,
}

fn held_nodes(nodes: &[String]) -> String {
    let shown: Vec<&str> = nodes.iter().take(5).map(String::as_str).collect();
    let more = if nodes.len() > 5 { format!(" and {} more", nodes.len() - 5) } else { String::new() };
    if nodes.len() == 1 {
        format!("node {} is", shown[0])
    } else {
        format!("nodes {}{more} are", shown.join(", "))
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Whether the process that took `lock` still runs: it holds the flock until it exits.
fn owner_alive(lock: &Path) -> bool {
    let Ok(file) = File::open(lock) else { return false };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        // Cannot tell (a file system without locks): do not take a live run's nodes.
        Err(std::fs::TryLockError::Error(_)) => true,
    }
}

fn mark_abandoned(tx: &rusqlite::Transaction<'_>, run: &str) -> rusqlite::Result<()> {
    tx.execute("UPDATE runs SET status = 'abandoned' WHERE id = ?1 AND status = 'running'", [run])?;
    tx.execute("UPDATE run_nodes SET outcome = 'abandoned' WHERE run_id = ?1 AND outcome = 'pending'", [run])?;
    tx.execute("UPDATE results SET status = 'abandoned' WHERE status = 'running' AND job_id IN (SELECT id FROM jobs WHERE run_id = ?1)", [run])?;
    let lock: Option<String> =
        tx.query_row("SELECT lock_path FROM runs WHERE id = ?1", [run], |r| r.get(0)).optional()?;
    if let Some(lock) = lock {
        let _ = std::fs::remove_file(lock);
    }
    Ok(())
}

/// The operator machine's name, recorded as part of a run's owner.
fn operator_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_is_a_path_or_a_url_director_serves() {
        assert_eq!(location(Path::new("h.db")).unwrap(), Path::new("h.db"));
        assert_eq!(location(Path::new("./a:b/h.db")).unwrap(), Path::new("./a:b/h.db"));
        assert_eq!(location(Path::new("C:h.db")).unwrap(), Path::new("C:h.db"), "one letter is not a scheme");
        assert_eq!(location(Path::new("sqlite:/var/h.db")).unwrap(), Path::new("/var/h.db"));
        assert_eq!(location(Path::new("sqlite:///var/h.db")).unwrap(), Path::new("/var/h.db"));
        assert_eq!(location(Path::new("sqlite:h.db")).unwrap(), Path::new("h.db"));
        let refused = |given: &str| location(Path::new(given)).unwrap_err().to_string();
        assert!(refused("postgres://u@db/director").contains("is a `postgres:` URL"));
        assert!(refused("postgresql://db").contains("is a `postgresql:` URL"));
        assert!(refused("mysql+ssl://db/x").contains("is a `mysql+ssl:` URL"));
        assert!(refused("sqlite:").contains("names no file"));
        assert_eq!(scheme("notes:today"), None, "a colon in a file name is a path");
    }
}
