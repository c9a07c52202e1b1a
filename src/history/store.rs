//! The one door to the history's database, whichever it is: SQLite (embedded, the default)
//! or PostgreSQL (one history a team shares).
//!
//! The rest of the history writes its SQL once, in the dialect both servers read: `?1`
//! placeholders, `ON CONFLICT` upserts, `CAST(… AS …)` where a type must be said. [`Store`]
//! turns that text into what its server needs (`$1` for PostgreSQL, `BIGINT` for a schema's
//! `INTEGER`, a JSON cast), keeps each statement prepared for the connection's life, and
//! gives rows back as [`Value`]s that the callers read with [`Row::get`]. Transactions are
//! [`Store::begin`] and [`Tx::commit`]; one dropped uncommitted rolls back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

/// A value going into or coming out of the database.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<&Option<String>> for Value {
    fn from(v: &Option<String>) -> Value {
        v.as_deref().into()
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Values for a statement's `?1`, `?2`, …: `args![a, b]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::history::store::Value::from($v)),*][..] };
}
pub(crate) use args;

/// A failure of the database, as text for the error that names the history.
#[derive(Debug)]
pub(crate) struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError(e.to_string())
    }
}

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

/// A value of a row read as a Rust type.
pub(crate) trait FromValue: Sized {
    fn from_value(v: &Value) -> std::result::Result<Self, String>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> std::result::Result<i64, String> {
        match v {
            Value::Int(i) => Ok(*i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> std::result::Result<f64, String> {
        match v {
            Value::Real(r) => Ok(*r),
            Value::Int(i) => Ok(*i as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> std::result::Result<bool, String> {
        i64::from_value(v).map(|i| i != 0)
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> std::result::Result<String, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> std::result::Result<Option<T>, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row of a result.
pub(crate) struct Row(Vec<Value>);

impl Row {
    /// Column `i` as a `T`.
    pub(crate) fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        let v = self.0.get(i).ok_or_else(|| StoreError(format!("no column {i} in the row")))?;
        T::from_value(v).map_err(|e| StoreError(format!("column {i}: {e}")))
    }
}

/// Which server, and so which dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Pg),
}

/// How long a PostgreSQL server may take to accept a connection when the URL does not say
/// (`?connect_timeout=S`).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A PostgreSQL connection, on a thread of its own: rust-postgres's blocking client runs a
/// runtime of its own, which cannot be entered from a thread of the operator's runtime (the
/// history is opened there), so every call is handed to that thread and waited for.
struct Pg {
    calls: std::sync::mpsc::Sender<PgCall>,
}

/// One call for the connection's thread to make.
type PgCall = Box<dyn FnOnce(&mut PgConn) + Send>;

struct PgConn {
    client: postgres::Client,
    prepared: HashMap<String, postgres::Statement>,
}

impl Pg {
    /// Connects to `url` (libpq's URL form) on a new thread.
    fn connect(url: &str) -> Result<Pg> {
        let super::tls::Connect { mut config, tls } = super::tls::connect_config(url)?;
        // As libpq: the user defaults to the login's name, and a password the URL does not
        // give comes from PGPASSWORD or the password file.
        if config.get_user().is_none() {
            if let Ok(user) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
                config.user(&user);
            }
        }
        if config.get_password().is_none() {
            let host = match config.get_hosts().first() {
                Some(postgres::config::Host::Tcp(host)) => host.clone(),
                _ => "localhost".to_string(),
            };
            let port = config.get_ports().first().copied().unwrap_or(5432);
            let user = config.get_user().unwrap_or_default().to_string();
            let database = config.get_dbname().unwrap_or(&user).to_string();
            // Said on stderr, as libpq says it: the history has no other voice before a run.
            let mut warn = |w: String| eprintln!("{w}");
            if let Some(password) = super::pgpass::lookup(&host, port, &database, &user, &mut warn) {
                config.password(password);
            }
        }
        // A server that does not answer is an error within this time, not a hung run.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let (calls, queue) = std::sync::mpsc::channel::<PgCall>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("history-pg".into())
            .spawn(move || {
                let client = match tls {
                    Some(tls) => config.connect(tls),
                    None => config.connect(postgres::NoTls),
                };
                let mut conn = match client {
                    Ok(client) => PgConn { client, prepared: HashMap::new() },
                    Err(e) => {
                        let _ = ready_tx.send(Err(pg_error(e)));
                        return;
                    }
                };
                // Inlined literals ([`pg_inline`]) rely on it (PostgreSQL's default since 9.1).
                if let Err(e) = conn.client.batch_execute("SET standard_conforming_strings = on") {
                    let _ = ready_tx.send(Err(pg_error(e)));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                while let Ok(call) = queue.recv() {
                    call(&mut conn);
                }
            })
            .map_err(|e| StoreError(format!("cannot start the PostgreSQL connection's thread: {e}")))?;
        ready.recv().map_err(|_| StoreError("the PostgreSQL connection's thread ended".into()))??;
        Ok(Pg { calls })
    }

    fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut PgConn) -> Result<T> + Send + 'static) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.calls
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| StoreError("the PostgreSQL connection's thread ended".into()))?;
        rx.recv().map_err(|_| StoreError("the PostgreSQL connection's thread ended".into()))?
    }
}

impl PgConn {
    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.client.prepare(&pg_sql(sql)).map_err(pg_error)?;
        self.prepared.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }
}

/// A connection to the history's database.
pub(crate) struct Store {
    conn: RefCell<Conn>,
    /// A write-only PostgreSQL transaction's statements, sent in one round trip at its
    /// commit ([`Store::begin_writes`]).
    deferred: RefCell<Option<String>>,
}

impl Store {
    pub(crate) fn sqlite(conn: rusqlite::Connection) -> Store {
        Store { conn: RefCell::new(Conn::Sqlite(conn)), deferred: RefCell::new(None) }
    }

    /// Connects to the PostgreSQL database at `url`.
    pub(crate) fn postgres(url: &str) -> Result<Store> {
        Ok(Store { conn: RefCell::new(Conn::Postgres(Pg::connect(url)?)), deferred: RefCell::new(None) })
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match &*self.conn.borrow() {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub(crate) fn exec(&self, sql: &str, args: &[Value]) -> Result<u64> {
        if let Some(deferred) = &mut *self.deferred.borrow_mut() {
            deferred.push_str(&pg_inline(sql, args));
            deferred.push_str(";\n");
            return Ok(0);
        }
        match &mut *self.conn.borrow_mut() {
            Conn::Sqlite(c) => Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(args))? as u64),
            Conn::Postgres(pg) => {
                let (sql, args) = (sql.to_string(), args.to_vec());
                pg.call(move |c| {
                    let stmt = c.prepare(&sql)?;
                    c.client.execute(&stmt, &pg_params(&args)).map_err(pg_error)
                })
            }
        }
    }

    /// Sends PostgreSQL statements as they are, in one round trip.
    fn batch_raw(&self, sql: String) -> Result<()> {
        match &mut *self.conn.borrow_mut() {
            Conn::Sqlite(c) => Ok(c.execute_batch(&sql)?),
            Conn::Postgres(pg) => pg.call(move |c| c.client.batch_execute(&sql).map_err(pg_error)),
        }
    }

    /// Runs statements without arguments, one after another (a schema's DDL).
    pub(crate) fn batch(&self, sql: &str) -> Result<()> {
        match &mut *self.conn.borrow_mut() {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(pg) => {
                let sql = pg_ddl(sql);
                pg.call(move |c| c.client.batch_execute(&sql).map_err(pg_error))
            }
        }
    }

    /// Every row of a query.
    pub(crate) fn rows(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        match &mut *self.conn.borrow_mut() {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let width = stmt.column_count();
                let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                    (0..width).map(|i| r.get_ref(i).map(sqlite_value)).collect::<rusqlite::Result<Vec<_>>>().map(Row)
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            }
            Conn::Postgres(pg) => {
                let (sql, args) = (sql.to_string(), args.to_vec());
                pg.call(move |c| {
                    let stmt = c.prepare(&sql)?;
                    let rows = c.client.query(&stmt, &pg_params(&args)).map_err(pg_error)?;
                    rows.iter().map(pg_row).collect()
                })
            }
        }
    }

    /// The first row of a query, if any.
    pub(crate) fn row(&self, sql: &str, args: &[Value]) -> Result<Option<Row>> {
        Ok(self.rows(sql, args)?.into_iter().next())
    }

    /// The first row's first column of a query that always has one (`count(*)`).
    pub(crate) fn one<T: FromValue>(&self, sql: &str, args: &[Value]) -> Result<T> {
        self.row(sql, args)?.ok_or_else(|| StoreError(format!("no row from `{sql}`")))?.get(0)
    }

    /// Starts a transaction that writes: on SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so two writers never deadlock upgrading a read.
    pub(crate) fn begin(&self) -> Result<Tx<'_>> {
        match self.dialect() {
            Dialect::Sqlite => self.batch("BEGIN IMMEDIATE")?,
            Dialect::Postgres => self.batch("BEGIN")?,
        }
        Ok(Tx { store: self, done: false, begun: true })
    }

    /// Starts a transaction that only writes and whose statements' counts nobody reads (the
    /// recorder's batches): on PostgreSQL its statements are kept, their values inlined as
    /// literals, and sent with `BEGIN` and `COMMIT` in one round trip at [`Tx::commit`] — a
    /// history across a WAN costs one round trip per batch, not one per statement. SQLite
    /// has no round trips: there it is [`Store::begin`].
    pub(crate) fn begin_writes(&self) -> Result<Tx<'_>> {
        if self.dialect() == Dialect::Sqlite {
            return self.begin();
        }
        *self.deferred.borrow_mut() = Some(String::from("BEGIN;\n"));
        Ok(Tx { store: self, done: false, begun: false })
    }
}

/// A transaction under way: [`Tx::commit`] ends it; dropped, it rolls back.
pub(crate) struct Tx<'a> {
    store: &'a Store,
    done: bool,
    /// Whether the server has seen its `BEGIN` (and so needs a `ROLLBACK` if dropped).
    begun: bool,
}

impl std::ops::Deref for Tx<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.store
    }
}

impl Tx<'_> {
    /// From here on, on PostgreSQL, this transaction's statements are kept and sent with its
    /// commit in one round trip, as in [`Store::begin_writes`] (after the reads it needed).
    pub(crate) fn defer_writes(&self) {
        if self.store.dialect() == Dialect::Postgres {
            self.store.deferred.borrow_mut().get_or_insert_with(String::new);
        }
    }

    pub(crate) fn commit(mut self) -> Result<()> {
        self.done = true;
        match self.store.deferred.borrow_mut().take() {
            Some(mut statements) => {
                statements.push_str("COMMIT;");
                self.store.batch_raw(statements)
            }
            None => self.store.batch("COMMIT"),
        }
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        // Deferred statements are dropped unsent; a BEGIN the server saw is rolled back.
        let deferred = self.store.deferred.borrow_mut().take();
        if !self.done && (self.begun || deferred.is_none()) {
            let _ = self.store.batch("ROLLBACK");
        }
    }
}

fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// The server's own message, or the driver's with its cause ("error connecting to server:
/// Connection refused (os error 111)").
fn pg_error(e: postgres::Error) -> StoreError {
    match (e.as_db_error(), std::error::Error::source(&e)) {
        (Some(db), _) => StoreError(db.message().to_string()),
        (None, Some(cause)) => StoreError(format!("{e}: {cause}")),
        (None, None) => StoreError(e.to_string()),
    }
}

/// A NULL of no particular type: PostgreSQL takes it for a parameter of any type.
#[derive(Debug)]
struct AnyNull;

impl postgres::types::ToSql for AnyNull {
    fn to_sql(
        &self,
        _: &postgres::types::Type,
        _: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(postgres::types::IsNull::Yes)
    }
    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }
    postgres::types::to_sql_checked!();
}

fn pg_params(args: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|v| -> &(dyn postgres::types::ToSql + Sync) {
            match v {
                Value::Null => &AnyNull,
                Value::Int(i) => i,
                Value::Real(r) => r,
                Value::Text(s) => s,
            }
        })
        .collect()
}

fn pg_row(row: &postgres::Row) -> Result<Row> {
    use postgres::types::Type;
    let mut values = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let t = col.type_();
        let err = |e: postgres::Error| StoreError(format!("column {}: {e}", col.name()));
        let v = if *t == Type::INT8 {
            row.try_get::<_, Option<i64>>(i).map_err(err)?.map(Value::Int)
        } else if *t == Type::INT4 {
            row.try_get::<_, Option<i32>>(i).map_err(err)?.map(|v| Value::Int(v.into()))
        } else if *t == Type::INT2 {
            row.try_get::<_, Option<i16>>(i).map_err(err)?.map(|v| Value::Int(v.into()))
        } else if *t == Type::BOOL {
            row.try_get::<_, Option<bool>>(i).map_err(err)?.map(|v| Value::Int(v.into()))
        } else if *t == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i).map_err(err)?.map(Value::Real)
        } else if *t == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(i).map_err(err)?.map(|v| Value::Real(v.into()))
        } else {
            row.try_get::<_, Option<String>>(i).map_err(err)?.map(Value::Text)
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

/// The statement as PostgreSQL reads it: `?N` placeholders become `$N` (outside quotes), and
/// SQLite's JSON function on a text column gets the cast PostgreSQL's needs.
pub(crate) fn pg_sql(sql: &str) -> String {
    placeholders(&json_cast(sql), |n| format!("${n}"))
}

/// The statement as PostgreSQL reads it with its values written in: `?N` becomes the N-th
/// value as a literal (text quoted with `'` doubled; the connection keeps
/// `standard_conforming_strings` on, so a backslash is a backslash). Outside quotes only.
pub(crate) fn pg_inline(sql: &str, args: &[Value]) -> String {
    let literal = |n: usize| match n.checked_sub(1).and_then(|i| args.get(i)) {
        None | Some(Value::Null) => "NULL".to_string(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::Real(r)) if r.is_finite() => format!("{r:?}"),
        Some(Value::Real(r)) => format!("'{r}'::float8"),
        // PostgreSQL text cannot hold NUL: it is dropped (sent as a parameter, the driver
        // would refuse the whole statement).
        Some(Value::Text(t)) => format!("'{}'", t.replace('\'', "''").replace('\0', "")),
    };
    placeholders(&json_cast(sql), literal)
}

/// `sql` with each `?N` outside quotes replaced by `with(N)`.
fn placeholders(sql: &str, with: impl Fn(usize) -> String) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '?' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + d as usize;
                chars.next();
            }
            out.push_str(&with(n));
            continue;
        }
        out.push(c);
    }
    out
}

/// SQLite's `json_array_length(X)` on a text column as PostgreSQL's needs it:
/// `json_array_length(CAST(X AS json))`. Applied to the statement as written, before any
/// value is written into it.
fn json_cast(sql: &str) -> String {
    const JSON: &str = "json_array_length(";
    let mut text = sql.to_string();
    let mut from = 0;
    while let Some(at) = text[from..].find(JSON).map(|at| from + at + JSON.len()) {
        let close = at + text[at..].find(')').unwrap_or(0);
        let cast = format!("CAST({} AS json)", &text[at..close]);
        text.replace_range(at..close, &cast);
        from = at + cast.len();
    }
    text
}

/// A schema's DDL as PostgreSQL needs it: its integers hold milliseconds since the epoch,
/// which need 64 bits (SQLite's INTEGER has them, PostgreSQL's has 32).
pub(crate) fn pg_ddl(sql: &str) -> String {
    sql.replace(" INTEGER", " BIGINT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_is_written_once_and_read_by_both_servers() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12"
        );
        assert_eq!(
            pg_sql("SELECT json_array_length(j.targets), json_array_length(x)"),
            "SELECT json_array_length(CAST(j.targets AS json)), json_array_length(CAST(x AS json))"
        );
        assert_eq!(pg_ddl("a INTEGER NOT NULL,\n b INTEGER"), "a BIGINT NOT NULL,\n b BIGINT");
        assert_eq!(
            pg_inline(
                "UPDATE t SET a = ?2, b = 'x?1', c = ?10, d = ?3 WHERE e = ?1",
                args!["it's \\ here", 7, None::<i64>, 4, 5, 6, 7, 8, 9, 1.5]
            ),
            "UPDATE t SET a = 7, b = 'x?1', c = 1.5, d = NULL WHERE e = 'it''s \\ here'"
        );
        assert_eq!(
            pg_inline("SELECT json_array_length(t), ?1", args!["json_array_length(x) ?2"]),
            "SELECT json_array_length(CAST(t AS json)), 'json_array_length(x) ?2'",
            "a value is written in as it is"
        );
    }

    #[test]
    fn sqlite_rows_come_back_as_values() {
        let store = Store::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        store.batch("CREATE TABLE t (a INTEGER, b TEXT, c REAL)").unwrap();
        let tx = store.begin().unwrap();
        tx.exec("INSERT INTO t VALUES (?1, ?2, ?3)", args![7, "x", None::<i64>]).unwrap();
        tx.commit().unwrap();
        {
            let tx = store.begin().unwrap();
            tx.exec("INSERT INTO t VALUES (?1, ?2, ?3)", args![8, "y", 1]).unwrap();
        }
        let rows = store.rows("SELECT a, b, c FROM t", &[]).unwrap();
        assert_eq!(rows.len(), 1, "a dropped transaction rolls back");
        assert_eq!(rows[0].get::<i64>(0).unwrap(), 7);
        assert_eq!(rows[0].get::<String>(1).unwrap(), "x");
        assert_eq!(rows[0].get::<Option<f64>>(2).unwrap(), None);
        assert!(rows[0].get::<String>(0).is_err());
        assert_eq!(store.one::<i64>("SELECT count(*) FROM t WHERE b = ?1", args!["x"]).unwrap(), 1);
    }
}
