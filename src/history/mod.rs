//! The run history: the record of what ran where, and the source of truth about runs.
//!
//! One database: SQLite (rusqlite, bundled), `~/.local/state/director/history.db` by default,
//! in WAL mode so a TUI reading it and a CLI writing it do not block each other; or
//! PostgreSQL (`--history postgres://…`), which a team's operators share. [`store`] is the one
//! door to either, and the rest writes its SQL once. It owns the schema ([`schema`]), the start
//! of a run (which takes the run's nodes: see [`History::begin`]), the writing of a run's
//! events ([`recorder`]) and the reading done by `manage` and `--retry-failed` ([`query`]).
//! It never prints and never sees clap types.
//!
//! Locks: a run holds its nodes while its row says `running`. Its process also holds an
//! exclusive `flock` on `locks/<run>.lock` beside the SQLite database (on PostgreSQL, a session
//! advisory lock on its connection); the kernel (the server) drops that lock when the process
//! dies however it dies, so a `running` row whose lock someone else can take belongs to a dead
//! process: it is shown, and recorded, as `abandoned`.

pub(crate) mod query;
pub(crate) mod recorder;
pub(crate) mod schema;
pub(crate) mod status;
mod pgpass;
pub(crate) mod store;
mod tls;

pub(crate) use status::{ResultStatus, RunStatus};

use crate::error::{exit, Error};
use crate::event::RunKind;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;
use store::{args, Store, StoreError};

/// The default history: `$XDG_STATE_HOME/director/history.db`, else
/// `~/.local/state/director/history.db`.
pub(crate) fn default_location() -> Location {
    Location::File(crate::paths::state_dir().join("history.db"))
}

/// Where the history is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// An SQLite database file.
    File(PathBuf),
    /// A PostgreSQL database a team shares, by its connection URL
    /// (`postgres://user@host:port/db`, libpq's form).
    Postgres(String),
}

/// As messages name it: the file, or the URL without its password.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db` (also after an
/// option's `=`); any other text as it is.
pub(crate) fn without_password(url: &str) -> String {
    if let Some((option, value)) = url.split_once('=').filter(|(o, _)| o.starts_with("--")) {
        return format!("{option}={}", without_password(value));
    }
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split_once(':').map_or(user, |(n, _)| n);
            format!("{scheme}://{name}:***@{host}{tail}")
        }
        _ => url.to_string(),
    }
}

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
    (well_formed && (rest.starts_with("//") || scheme == "sqlite")).then_some(scheme)
}

/// Where the history is, from `--history`, `DIRECTOR_HISTORY` or the settings file: a path,
/// `sqlite:PATH` (`sqlite:///abs/path` too), or a `postgres://` (`postgresql://`) URL. A URL
/// of a kind director does not serve is an input error, never a directory named after its
/// scheme.
pub(crate) fn location(given: &Path) -> Result<Location, Error> {
    let text = given.to_string_lossy();
    match scheme(&text) {
        None => Ok(Location::File(given.to_path_buf())),
        Some("sqlite") => {
            let path = &text["sqlite:".len()..];
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(
                    Error::input("the history `sqlite:` names no file").hint("write sqlite:PATH, or the path alone")
                );
            }
            Ok(Location::File(crate::paths::expand_home(path)))
        }
        Some("postgres" | "postgresql") => {
            tls::connect_config(&text).map_err(|e| {
                Error::input(format!(
                    "the history `{}` is not a PostgreSQL URL director can use: {e}",
                    without_password(&text)
                ))
                .hint(
                    "write postgres://USER@HOST[:PORT]/DATABASE[?sslmode=verify-full&sslrootcert=CA.pem] (libpq's URL form; ?host=/run/postgresql for a socket)",
                )
            })?;
            Ok(Location::Postgres(text.into_owned()))
        }
        Some(other) => Err(Error::input(format!(
            "the history `{text}` is a `{other}:` URL, and director keeps its history in SQLite or PostgreSQL"
        ))
        .hint("give a file path, sqlite:PATH, or postgres://USER@HOST/DATABASE")),
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

/// A started run: its process holds the lock file for as long as this lives (on
/// PostgreSQL, the history's connection holds an advisory lock for as long as it lives).
pub(crate) struct RunGuard {
    lock: Option<(PathBuf, File)>,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Some((path, _)) = &self.lock {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub(crate) struct History {
    pub location: Location,
    store: Store,
}

/// The history cannot be opened: the place the user chose is unusable, so bad input (exit
/// 2), found before any node is contacted.
fn open_error(location: &Location, why: impl std::fmt::Display) -> Error {
    Error::input(format!("cannot open the run history {location}: {why}")).hint(match location {
        Location::File(_) => {
            "choose another file with --history PATH (or DIRECTOR_HISTORY, or `history:` in the config file)"
        }
        Location::Postgres(_) => {
            "check that the server runs and takes this URL (psql URL), or choose another --history"
        }
    })
}

fn db_error(location: &Location, e: StoreError) -> Error {
    Error::internal(format!("the run history {location} failed: {e}"))
}

/// 32 random bytes from the kernel.
fn random_key() -> std::io::Result<[u8; SEAL_KEY_BYTES]> {
    let mut key = [0u8; SEAL_KEY_BYTES];
    std::io::Read::read_exact(&mut File::open("/dev/urandom")?, &mut key)?;
    Ok(key)
}

/// The advisory lock a PostgreSQL transaction that starts a run holds.
const BEGIN_LOCK: i64 = 0x6469_7265_6374_0001;

/// The advisory lock of run `id`'s operator: 63 bits of a hash of the id.
fn advisory_key(id: &str) -> i64 {
    i64::from_str_radix(&hash_id(id)[..15], 16).unwrap_or(1)
}

/// Takes run `run`'s advisory lock on `store`'s PostgreSQL connection, held until that
/// connection closes however its process ends; returns what the run's lock column says.
fn take_run_lock(store: &Store, run: &str) -> store::Result<String> {
    let key = advisory_key(run);
    store.one::<Option<String>>("SELECT CAST(pg_advisory_lock(?1) AS TEXT)", args![key])?;
    Ok(format!("{ADVISORY}{key}"))
}

/// How a run's lock column names its owner on PostgreSQL: the advisory lock its operator's
/// connection holds.
const ADVISORY: &str = "advisory:";

impl History {
    /// Opens (creating it and its directory if needed) and migrates the database.
    pub(crate) fn open(location: &Location) -> Result<History, Error> {
        let path = match location {
            Location::File(path) => path,
            Location::Postgres(url) => {
                let store = Store::postgres(url).map_err(|e| open_error(location, e))?;
                schema::migrate(&store).map_err(|e| open_error(location, e))?;
                return Ok(History { location: location.clone(), store });
            }
        };
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.clone());
        let location = &Location::File(path.clone());
        if path.is_dir() {
            return Err(open_error(location, "it is a directory"));
        }
        if let Some(dir) = path.parent() {
            crate::private::create_dir_all(dir).map_err(|e| open_error(location, crate::error::io_reason(&e)))?;
        }
        // SQLite creates the file with the umask's mode: create it private first. Its -wal
        // and -shm files take the database's mode.
        crate::private::touch(path).map_err(|e| open_error(location, crate::error::io_reason(&e)))?;
        let conn = rusqlite::Connection::open(path).map_err(|e| open_error(location, e))?;
        configure(&conn).map_err(|e| open_error(location, e))?;
        let store = Store::sqlite(conn);
        schema::migrate(&store).map_err(|e| open_error(location, e))?;
        Ok(History { location: location.clone(), store })
    }

    /// The SQLite file, if the history is one.
    pub(crate) fn file(&self) -> Option<&Path> {
        match &self.location {
            Location::File(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }

    /// The key fingerprints holding a secret are hashed with
    /// ([`crate::plan::fingerprint::Seal`]): 32 random bytes in `<history>.key` beside the
    /// database, mode 0600, made by the first run that opens this history. Whoever holds the
    /// history holds the key; without it, its hashes of secrets cannot be checked against
    /// guesses.
    pub(crate) fn seal_key(&self) -> Result<std::sync::Arc<[u8]>, Error> {
        let Some(file) = self.file() else { return self.seal_key_in_database() };
        let mut name = file.to_path_buf().into_os_string();
        name.push(".key");
        let path = PathBuf::from(name);
        let failed = |e: std::io::Error| {
            Error::input(format!("cannot use the history's key {}: {}", path.display(), crate::error::io_reason(&e)))
        };
        if !path.exists() {
            crate::private::create_once(&path, &random_key().map_err(failed)?).map_err(failed)?;
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

    /// On PostgreSQL the key is a row of the database (`history_key`), made once by the first
    /// run: whoever can read the history's results can read it, as with the file beside
    /// SQLite's.
    fn seal_key_in_database(&self) -> Result<std::sync::Arc<[u8]>, Error> {
        let e = |e| db_error(&self.location, e);
        let key = random_key().map_err(|err| Error::internal(format!("cannot make the history's key: {err}")))?;
        let tx = self.store.begin().map_err(e)?;
        // Two first runs at once: CREATE TABLE IF NOT EXISTS is not safe against itself in
        // PostgreSQL (both may try to create the type), so one waits for the other here.
        tx.exec("SELECT pg_advisory_xact_lock(?1)", args![BEGIN_LOCK]).map_err(e)?;
        tx.batch("CREATE TABLE IF NOT EXISTS history_key (key TEXT NOT NULL)").map_err(e)?;
        tx.exec(
            "INSERT INTO history_key (key) SELECT ?1 WHERE NOT EXISTS (SELECT 1 FROM history_key)",
            args![crate::verb::source::hex(&key)],
        )
        .map_err(e)?;
        let hex: String = tx.one("SELECT key FROM history_key LIMIT 1", &[]).map_err(e)?;
        tx.commit().map_err(e)?;
        let key = director_proto::unhex(&hex).unwrap_or_default();
        if key.len() != SEAL_KEY_BYTES {
            return Err(Error::input(format!("the history's key in {} is not a key", self.location))
                .hint("it was changed by something else; delete the row of table history_key to make a new one"));
        }
        Ok(key.into())
    }

    /// Opens the database only if it exists: reading an empty history creates nothing. (A
    /// PostgreSQL database always exists; its tables are made on first use.)
    pub(crate) fn open_existing(location: &Location) -> Result<Option<History>, Error> {
        if let Location::File(path) = location {
            if !path.exists() {
                return Ok(None);
            }
        }
        Self::open(location).map(Some)
    }

    /// Connects again after the database failed: on PostgreSQL a new connection, which takes
    /// run `run`'s advisory lock again (its old connection's went with it); SQLite has no
    /// connection to lose.
    pub(crate) fn reconnect(&mut self, run: &str) -> store::Result<()> {
        if let Location::Postgres(url) = &self.location {
            self.store = Store::postgres(url)?;
            take_run_lock(&self.store, run)?;
        }
        Ok(())
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    fn err(&self, e: StoreError) -> Error {
        db_error(&self.location, e)
    }

    /// Whether the operator of a run whose lock column says `lock` still runs: it holds the
    /// lock file's flock, or on PostgreSQL the advisory lock, until it exits.
    fn owner_alive(&self, lock: &str) -> bool {
        match lock.strip_prefix(ADVISORY).and_then(|key| key.parse::<i64>().ok()) {
            None => owner_alive(Path::new(lock)),
            Some(key) => match self.store.one::<bool>("SELECT pg_try_advisory_lock(?1)", args![key]) {
                Ok(true) => {
                    let _ = self.store.one::<bool>("SELECT pg_advisory_unlock(?1)", args![key]);
                    false
                }
                // Held elsewhere, or cannot tell: do not take a live run's nodes.
                _ => true,
            },
        }
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
        let (guard, owner) = match self.file() {
            Some(file) => {
                let locks = file.parent().unwrap_or(Path::new(".")).join("locks");
                let failed = |e: std::io::Error| open_error(&self.location, crate::error::io_reason(&e));
                crate::private::create_dir_all(&locks).map_err(failed)?;
                let lock_path = locks.join(format!("{}.lock", spec.id));
                let lock = File::create(&lock_path).map_err(failed)?;
                lock.lock().map_err(failed)?;
                let owner = lock_path.display().to_string();
                (RunGuard { lock: Some((lock_path, lock)) }, owner)
            }
            None => {
                let owner = take_run_lock(&self.store, &spec.id).map_err(|e| self.err(e))?;
                (RunGuard { lock: None }, owner)
            }
        };
        let mut told = false;
        loop {
            match self.try_begin(spec, &owner, contention != Contention::Share)? {
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

    fn try_begin(&mut self, spec: &RunSpec, owner: &str, exclusive: bool) -> Result<Option<Holder>, Error> {
        let err = |e| db_error(&self.location, e);
        let tx = self.store.begin().map_err(err)?;
        if tx.dialect() == store::Dialect::Postgres {
            // One run starts at a time across operators, as SQLite's write lock makes it.
            tx.exec("SELECT pg_advisory_xact_lock(?1)", args![BEGIN_LOCK]).map_err(err)?;
        }
        let wanted: Vec<&str> = spec.nodes.iter().map(|(n, _)| n.as_str()).collect();
        let rows = tx
            .rows(
                &format!(
                    "SELECT r.id, r.command, {}, r.pid, r.lock_path, n.node
                     FROM runs r JOIN run_nodes n ON n.run_id = r.id WHERE r.status = 'running' ORDER BY r.started_at, n.node",
                    query::time("r.started_at")
                ),
                &[],
            )
            .map_err(err)?;
        let mut holders: Vec<(Holder, String)> = Vec::new();
        for row in rows {
            let read = || -> store::Result<_> {
                Ok((
                    row.get::<String>(0)?,
                    row.get::<String>(1)?,
                    row.get::<query::When>(2)?.rfc3339(),
                    row.get::<i64>(3)?,
                    row.get::<String>(4)?,
                    row.get::<String>(5)?,
                ))
            };
            let (run, command, started, pid, lock, node) = read().map_err(err)?;
            if !exclusive || !wanted.contains(&node.as_str()) {
                continue;
            }
            match holders.iter_mut().find(|(h, _)| h.run == run) {
                Some((h, _)) => h.nodes.push(node),
                None => holders.push((Holder { run, command, started, pid, nodes: vec![node] }, lock)),
            }
        }
        for (holder, lock) in holders {
            if self.owner_alive(&lock) {
                return Ok(Some(holder));
            }
            mark_abandoned(&tx, &holder.run).map_err(err)?;
        }
        let now = now_ms();
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_default();
        // The run, its nodes and its jobs go with the commit: one round trip to PostgreSQL.
        tx.defer_writes();
        tx.exec(
            "INSERT INTO runs (id, kind, command, files, catalogs, started_at, status, pid, host, lock_path, mode) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8, ?9, ?10)",
            args![&spec.id, spec.kind, &spec.command, json(&spec.files), json(&spec.catalogs), now, std::process::id(), operator_host(), owner, spec.mode],
        )
        .map_err(err)?;
        for (node, address) in &spec.nodes {
            tx.exec(
                "INSERT INTO run_nodes (run_id, node, address) VALUES (?1, ?2, ?3)",
                args![&spec.id, node, address],
            )
            .map_err(err)?;
        }
        for job in &spec.jobs {
            tx.exec(
                "INSERT INTO jobs (id, run_id, seq, parent_id, parent_name, parent_sha3, name, verb, definition, targets, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                args![
                    spec.job_id(job.seq),
                    &spec.id,
                    job.seq,
                    spec.parent_id(job.entry),
                    &job.parent_name,
                    &job.parent_sha3,
                    &job.name,
                    &job.verb,
                    &job.definition,
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
        let running =
            self.store.rows("SELECT id, lock_path FROM runs WHERE status = 'running'", &[]).map_err(|e| self.err(e))?;
        let mut gone = Vec::new();
        for row in running {
            let (id, lock): (String, String) = (|| Ok((row.get(0)?, row.get(1)?)))().map_err(|e| self.err(e))?;
            if !self.owner_alive(&lock) {
                gone.push(id);
            }
        }
        if !gone.is_empty() {
            let tx = self.store.begin().map_err(|e| db_error(&self.location, e))?;
            for id in &gone {
                mark_abandoned(&tx, id).map_err(|e| db_error(&self.location, e))?;
            }
            tx.commit().map_err(|e| db_error(&self.location, e))?;
        }
        Ok(gone)
    }

    /// Asks run `id` to cancel. What happened is returned for the caller to say.
    pub(crate) fn request_cancel(&mut self, id: &str) -> Result<CancelState, Error> {
        let row =
            self.store.row("SELECT status, lock_path FROM runs WHERE id = ?1", args![id]).map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(CancelState::Unknown) };
        let (status, lock): (RunStatus, String) = (|| Ok((row.get(0)?, row.get(1)?)))().map_err(|e| self.err(e))?;
        if status != RunStatus::Running {
            return Ok(CancelState::NotRunning(status));
        }
        if !self.owner_alive(&lock) {
            let e = |e| db_error(&self.location, e);
            let tx = self.store.begin().map_err(e)?;
            mark_abandoned(&tx, id).map_err(e)?;
            tx.exec("UPDATE runs SET status = 'cancelled' WHERE id = ?1", args![id]).map_err(e)?;
            tx.commit().map_err(e)?;
            return Ok(CancelState::OwnerGone);
        }
        self.store.exec("UPDATE runs SET cancel_requested = 1 WHERE id = ?1", args![id]).map_err(|e| self.err(e))?;
        Ok(CancelState::Requested)
    }

    /// The status of run `id` now.
    pub(crate) fn status(&self, id: &str) -> Result<Option<RunStatus>, Error> {
        let row = self.store.row("SELECT status FROM runs WHERE id = ?1", args![id]).map_err(|e| self.err(e))?;
        row.map(|r| r.get(0)).transpose().map_err(|e| self.err(e))
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

fn configure(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
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

fn mark_abandoned(tx: &Store, run: &str) -> store::Result<()> {
    tx.exec("UPDATE runs SET status = 'abandoned' WHERE id = ?1 AND status = 'running'", args![run])?;
    tx.exec("UPDATE run_nodes SET outcome = 'abandoned' WHERE run_id = ?1 AND outcome = 'pending'", args![run])?;
    tx.exec("UPDATE results SET status = 'abandoned' WHERE status = 'running' AND job_id IN (SELECT id FROM jobs WHERE run_id = ?1)", args![run])?;
    let lock = tx.row("SELECT lock_path FROM runs WHERE id = ?1", args![run])?;
    if let Some(lock) = lock {
        let lock = lock.get::<String>(0)?;
        if !lock.starts_with(ADVISORY) {
            let _ = std::fs::remove_file(lock);
        }
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
        let file = |p: &str| Location::File(PathBuf::from(p));
        assert_eq!(location(Path::new("h.db")).unwrap(), file("h.db"));
        assert_eq!(location(Path::new("./a:b/h.db")).unwrap(), file("./a:b/h.db"));
        assert_eq!(location(Path::new("C:h.db")).unwrap(), file("C:h.db"), "one letter is not a scheme");
        assert_eq!(location(Path::new("sqlite:/var/h.db")).unwrap(), file("/var/h.db"));
        assert_eq!(location(Path::new("sqlite:///var/h.db")).unwrap(), file("/var/h.db"));
        assert_eq!(location(Path::new("sqlite:h.db")).unwrap(), file("h.db"));
        let pg = "postgres://director:s3cret@db:5433/director";
        assert_eq!(location(Path::new(pg)).unwrap(), Location::Postgres(pg.into()));
        assert_eq!(location(Path::new(pg)).unwrap().to_string(), "postgres://director:***@db:5433/director");
        assert_eq!(Location::Postgres("postgresql://db/x".into()).to_string(), "postgresql://db/x");
        let refused = |given: &str| location(Path::new(given)).unwrap_err().to_string();
        assert!(refused("mysql+ssl://db/x").contains("is a `mysql+ssl:` URL"));
        assert!(refused("postgres://u@db:notaport/x").contains("is not a PostgreSQL URL director can use"));
        assert!(refused("sqlite:").contains("names no file"));
        assert_eq!(scheme("notes:today"), None, "a colon in a file name is a path");
    }
}
