//! One job on one node, from templates to the cache record.
//!
//! The steps: render the job's templates with the node's cached args (an undefined variable
//! fails the job here, naming the variable, the job and the node); compute its fingerprint;
//! answer it from the node cache when it is cacheable, not `--skip-cache`, recorded as a
//! success, and the node still matches the record (ADD/COPY: every file it wrote has the
//! recorded hash and the mode and owner asked; WORKDIR: the directory is there as asked);
//! otherwise do the verb (one that ran because the node no longer matched says why); then store `--stdout-arg`/`--stderr-arg`, record the success, and save the cache
//! on the node. Verbs that only change the cache (ARG, ENV, CACHEFILE, CACHEEVICT, QUERY)
//! report `cached` when they leave it as it was.

use super::cache::{JobRecord, Kind};
use super::diff;
use super::preview::Pending;
use super::session::{Content, Session};
use super::shared::{lock, until, NodeState, Shared};
use super::{EngineConfig, Sink, CANCEL_KILL, CANCEL_NONE};
use crate::catalog::template::Renderer;
use crate::catalog::Node;
use crate::event::{Event, JobStatus, RunMode, Stream};
use crate::plan::fingerprint::{self, Rendered};
use crate::plan::{Job, Plan, WaitOn, Work};
use director_proto::{Done, Outcome, Reply, Request};
use serde_json::{json, Value};
use std::time::Instant;
use tokio::sync::watch;

/// Why a job answered from its record did not run.
pub const CACHED_HINT: &str = "done before with this exact fingerprint (--ignore-cache runs it again)";

/// Largest captured output kept for `--stdout-arg`/`--stderr-arg`, per stream.
const CAPTURE_LIMIT: usize = 4 * 1024 * 1024;
/// Largest `--blueprint` template (it is rendered in memory).
const BLUEPRINT_LIMIT: u64 = 16 * 1024 * 1024;

/// Everything a job on one node can reach.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    pub plan: &'a Plan,
    pub index: usize,
    pub node: &'a Node,
    /// The executor the job runs on (the one of the account it runs as).
    pub session: &'a Session,
    /// The node's own executor, which keeps the node cache.
    pub home: &'a Session,
    pub sink: &'a Sink,
    pub shared: &'a Shared,
    pub renderer: &'a std::sync::Arc<Renderer>,
    pub config: &'a EngineConfig,
}

impl Cx<'_> {
    fn state(&self) -> &NodeState {
        &self.shared.nodes[self.index]
    }

    /// In a plan: why `job`, which uses the variables `uses`, cannot be known before a job
    /// that would run first on this node captures one of them.
    fn depends(&self, uses: &std::collections::BTreeSet<String>) -> Option<String> {
        Pending::blocking(&lock(&self.state().pending), uses)
    }

    /// Writes the in-memory cache to the node, atomically there.
    pub async fn save(&self) -> Result<(), String> {
        let state = self.state();
        let _turn = state.save.lock().await;
        let data = state.cache().to_text();
        if data.len() > director_proto::MAX_CACHE {
            return Err(format!(
                "cannot save the node cache: it would be {} bytes, over the {} MiB a node cache may hold (large --stdout-arg or --stderr-arg captures are the usual cause)",
                data.len(),
                director_proto::MAX_CACHE >> 20
            ));
        }
        match self.home.call(|id| Request::SaveCache { id, data }).await? {
            Done::Failed { message } => Err(format!("cannot save the node cache: {message}")),
            _ => Ok(()),
        }
    }
}

/// How a job ended on the node.
pub struct Finish {
    pub status: JobStatus,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    stdout: String,
    stderr: String,
    /// The node cache changed, so it must be saved.
    dirty: bool,
    files: Vec<(String, String)>,
    /// Answered from the job records: its captured args were restored, not re-captured.
    hit: bool,
}

impl Finish {
    fn ok(stdout: impl Into<String>) -> Self {
        Finish {
            status: JobStatus::Ok,
            exit_code: None,
            reason: None,
            stdout: stdout.into(),
            stderr: String::new(),
            dirty: false,
            files: Vec::new(),
            hit: false,
        }
    }

    fn would_run(reason: impl Into<String>) -> Self {
        Finish { status: JobStatus::WouldRun, reason: Some(reason.into()), ..Finish::ok("") }
    }

    fn failed(reason: impl Into<String>) -> Self {
        Finish { status: JobStatus::Failed, reason: Some(reason.into()), ..Finish::ok("") }
    }

    /// A cache-only verb: `cached` when nothing changed.
    fn cache_only(changed: bool, stdout: impl Into<String>) -> Self {
        Finish { status: if changed { JobStatus::Ok } else { JobStatus::Cached }, dirty: changed, ..Finish::ok(stdout) }
    }
}

/// A file an ADD/COPY is about to write.
struct Outgoing {
    dest: String,
    size: u64,
    sha3: String,
    body: Body,
}

enum Body {
    File(std::path::PathBuf),
    Rendered(Vec<u8>),
}

/// Runs `job` on the node and reports it; returns its status.
pub async fn run_job(cx: &Cx<'_>, job: &Job, cancel: watch::Receiver<u8>) -> JobStatus {
    let started = Instant::now();
    let planning = cx.config.mode == RunMode::Plan;
    let finish = match prepare(cx, job).await {
        // A plan cannot render a job that needs what a job before it would capture.
        Err(reason) => match if planning { depends_unrendered(cx, job).await } else { None } {
            Some(why) => Finish::would_run(why),
            None => Finish::failed(format!("{reason} (job {} `{}` on node {})", job.id + 1, job.label(), cx.node.name)),
        },
        Ok((rendered, outgoing)) => {
            // A secret is known as rendered on this node before anything about the job is said.
            if let Work::Arg { secret: true, .. } = job.work {
                cx.sink.secrets.add_value(&rendered.value);
            }
            let fingerprint = fingerprint::of(job, &rendered);
            let fp = &fingerprint.hash;
            let info = rendered_info(job, &rendered);
            cx.sink
                .emit(Event::JobStarted {
                    node: cx.node.name.clone(),
                    job: job.id,
                    name: job.full_name(),
                    fingerprint: fp.clone(),
                    info,
                })
                .await;
            let mut finish = if planning {
                let finish = preview(cx, job, &fingerprint, &rendered, cancel).await;
                if finish.status == JobStatus::WouldRun && cx.config.diff {
                    show_diff(cx, job, &outgoing).await;
                }
                finish
            } else {
                match cached(cx, job, fp, &rendered).await {
                    Ok(hit) => hit,
                    Err(drift) => {
                        if cx.config.diff {
                            show_diff(cx, job, &outgoing).await;
                        }
                        let mut finish = perform(cx, job, &rendered, outgoing, cancel).await;
                        // A record the node no longer matches: the job ran again, and says why.
                        if let (Some(why), JobStatus::Ok) = (drift, finish.status) {
                            finish.reason = Some(format!("was cached, but {why}: done again"));
                        }
                        finish
                    }
                }
            };
            // Verbs that run no command say what they did as their output; a job answered
            // from its record says what it printed when it ran.
            let ran_a_command =
                matches!(job.work, Work::Run { .. } | Work::Shell { .. } | Work::Echo { .. } | Work::Wait { .. });
            if (!ran_a_command || finish.hit) && !finish.stdout.is_empty() {
                cx.sink
                    .emit(Event::JobOutput {
                        node: cx.node.name.clone(),
                        job: job.id,
                        stream: Stream::Stdout,
                        data: if finish.hit { finish.stdout.clone() } else { format!("{}\n", finish.stdout) },
                    })
                    .await;
            }
            // The job's own outcome stands when only its record could not be saved (a full
            // disk): the node is told, and the job runs again next time. A plan records nothing.
            if !planning {
                if let Err(e) = record(cx, job, &fingerprint, &rendered, &mut finish).await {
                    if cx.session.lost().is_none() {
                        let message = format!("job {} ({}): {e}; it will run again next time", job.id + 1, job.label());
                        cx.sink.emit(Event::NodeNotice { node: cx.node.name.clone(), message }).await;
                    }
                }
            }
            finish
        }
    };
    // A job cut short because the node was lost did not fail on its own: it is reported
    // cancelled, and the node unreachable (exit 3, not 1).
    let finish = match (finish.status, cx.session.lost()) {
        (JobStatus::Failed, Some(lost)) => Finish {
            status: JobStatus::Cancelled,
            reason: Some(format!("the node was lost while this job ran: {lost}")),
            ..finish
        },
        _ => finish,
    };
    tracing::debug!(
        node = %cx.node.name,
        job = job.id + 1,
        status = ?finish.status,
        ms = started.elapsed().as_millis() as u64,
        "job {}",
        cx.sink.secrets.mask(&job.label())
    );
    cx.sink
        .emit(Event::JobFinished {
            node: cx.node.name.clone(),
            job: job.id,
            name: job.full_name(),
            status: finish.status,
            exit_code: finish.exit_code,
            reason: finish.reason,
            ms: started.elapsed().as_millis() as u64,
        })
        .await;
    finish.status
}

/// In a plan, for a job that could not be rendered: whether it uses (in its arguments or its
/// `--blueprint` files) an arg a job before it would capture.
async fn depends_unrendered(cx: &Cx<'_>, job: &Job) -> Option<String> {
    let blueprints = read_blueprints(&job.work).await.unwrap_or_default();
    let texts: Vec<&str> = job.work.templates().into_iter().chain(blueprints.iter().map(String::as_str)).collect();
    cx.depends(&cx.renderer.uses_all(&texts))
}

/// The events of a job that could not start because its account's executor did not: it
/// starts and fails with `reason`.
pub fn failed_to_start(node: &Node, job: &Job, reason: String) -> Event {
    Event::JobFinished {
        node: node.name.clone(),
        job: job.id,
        name: job.full_name(),
        status: JobStatus::Failed,
        exit_code: None,
        reason: Some(format!("{reason} (job {} `{}` on node {})", job.id + 1, job.label(), node.name)),
        ms: 0,
    }
}

/// What the job does on this node, as a person would read it, for the events and history.
fn rendered_info(job: &Job, r: &Rendered) -> String {
    let text = match &job.work {
        Work::Run { .. }
        | Work::Shell { .. }
        | Work::Workdir { .. }
        | Work::Wait { on: WaitOn::Url(_) | WaitOn::Cmd(_), .. } => r.text.clone(),
        Work::Fetch { .. } => format!("{} -> {}", r.text, r.value.as_str().unwrap_or_default()),
        Work::Arg { key, .. } => format!("{key} = {}", r.value),
        Work::Copy { .. } | Work::Send { .. } => {
            r.files.iter().map(|(dest, sha3)| format!("{dest} (sha3-224 {sha3})")).collect::<Vec<_>>().join("\n")
        }
        _ => job.label(),
    };
    crate::ellipsize(&text, 4096)
}

/// Renders the job's templates with the node's args and, for ADD/COPY, works out each
/// destination and content hash.
async fn prepare(cx: &Cx<'_>, job: &Job) -> Result<(Rendered, Vec<Outgoing>), String> {
    let (cached, env) = {
        let cache = cx.state().cache();
        (cache.args_value(), cache.env_map())
    };
    // The catalog's vars for the node are the defaults; what its cache holds (ARG, QUERY…)
    // wins over them, the plan's own extras (bootstrap's catalog) over both, and `facts` is
    // always the node's.
    let mut context = cx.node.vars.clone();
    if let Value::Object(a) = cached {
        context.extend(a);
    }
    if let Some(extra) = cx.plan.vars.get(cx.index) {
        context.extend(extra.clone());
    }
    // What the node said of itself when its executor started.
    context.insert("facts".to_string(), Value::Object(lock(&cx.state().facts).clone()));
    let args = Value::Object(context);
    let blueprints = read_blueprints(&job.work).await?;
    let run_as = job.account(cx.node).user().map(str::to_string);
    if !job.heavy() {
        // Nothing to render, hash or look up: no thread hop.
        return render_work(cx.renderer, &job.work, &args, env, blueprints)
            .map(|(r, out)| (Rendered { run_as, ..r }, out));
    }
    // Rendering, hashing and looking up files are CPU work: they run on a blocking thread,
    // so a heavy template never stalls the other nodes, and fuel bounds the template work.
    let (renderer, work) = (cx.renderer.clone(), job.work.clone());
    tokio::task::spawn_blocking(move || render_work(&renderer, &work, &args, env, blueprints))
        .await
        .map_err(|e| format!("rendering failed: {e}"))?
        .map(|(r, out)| (Rendered { run_as, ..r }, out))
}

/// The texts of an ADD/COPY's `--blueprint` sources, in order (none for other jobs).
async fn read_blueprints(work: &Work) -> Result<Vec<String>, String> {
    let Work::Copy { sources, blueprint: true, .. } = work else { return Ok(Vec::new()) };
    let mut texts = Vec::new();
    for source in sources {
        if source.size > BLUEPRINT_LIMIT {
            return Err(format!(
                "{} is too large to render as a blueprint ({} bytes, at most {BLUEPRINT_LIMIT})",
                source.path.display(),
                source.size
            ));
        }
        let text = tokio::fs::read_to_string(&source.path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", source.path.display()))?;
        texts.push(text);
    }
    Ok(texts)
}

/// Renders a job's templates with `args` (blocking: call it off the async threads).
fn render_work(
    renderer: &Renderer,
    work: &Work,
    args: &Value,
    env: serde_json::Map<String, Value>,
    blueprints: Vec<String>,
) -> Result<(Rendered, Vec<Outgoing>), String> {
    // The variables the templates read are noted from the parse they render with.
    let used = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let render = |t: &str| renderer.render_noting(t, args, Some(&mut used.borrow_mut()));
    let mut r = Rendered { env, ..Rendered::default() };
    let mut outgoing = Vec::new();
    match work {
        Work::Run { command, .. } | Work::Shell { command } => r.text = render(command)?,
        Work::Fetch { remote, local } => {
            r.text = render(remote)?;
            r.value = Value::String(render(local)?);
        }
        Work::Send { source, dest, roots } => {
            let source = render(source)?;
            let dest = render(dest)?;
            let found = crate::plan::verbs::find_source(&source, roots).map_err(|e| e.message)?;
            r.files.push((dest.clone(), found.sha3.clone()));
            outgoing.push(Outgoing { dest, size: found.size, sha3: found.sha3, body: Body::File(found.path) });
        }
        Work::Workdir { path, .. } => r.text = render(path)?,
        Work::Wait { on: WaitOn::Url(t) | WaitOn::Cmd(t), .. } => r.text = render(t)?,
        Work::Arg { value, .. } => r.value = render_value(value, &render)?,
        Work::Copy { sources, dest, blueprint, .. } => {
            let dest = render(dest)?;
            let mut texts = blueprints.into_iter();
            for source in sources {
                let to = if dest.ends_with('/') {
                    format!("{dest}{}", source.path.file_name().unwrap_or_default().to_string_lossy())
                } else {
                    dest.clone()
                };
                let file = match texts.next().filter(|_| *blueprint) {
                    Some(text) => {
                        let bytes = render(&text)
                            .map_err(|e| format!("{e} in blueprint {}", source.path.display()))?
                            .into_bytes();
                        let sha3 = crate::plan::verbs::hex(&<sha3::Sha3_224 as sha3::Digest>::digest(&bytes));
                        Outgoing { dest: to, size: bytes.len() as u64, sha3, body: Body::Rendered(bytes) }
                    }
                    None => Outgoing {
                        dest: to,
                        size: source.size,
                        sha3: source.sha3.clone(),
                        body: Body::File(source.path.clone()),
                    },
                };
                r.files.push((file.dest.clone(), file.sha3.clone()));
                outgoing.push(file);
            }
        }
        _ => {}
    }
    r.uses = used
        .into_inner()
        .into_iter()
        .map(|name| {
            let value = args.get(&name).map(fingerprint::short).unwrap_or_default();
            (name, value)
        })
        .collect();
    Ok((r, outgoing))
}

/// ARG/ENV values are rendered as Directord did: the JSON text of the value, then read back.
fn render_value(value: &Value, render: &dyn Fn(&str) -> Result<String, String>) -> Result<Value, String> {
    match value {
        Value::String(s) => Ok(Value::String(render(s)?)),
        Value::Array(items) => {
            items.iter().map(|v| render_value(v, render)).collect::<Result<_, _>>().map(Value::Array)
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), render_value(v, render)?)))
            .collect::<Result<_, String>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// What no longer holds on the node of what a cache hit promises, if anything: a file the
/// job wrote that is gone, changed, or not of the mode, owner or group the job asks; for
/// WORKDIR, the directory gone, not a directory, or not as asked. One stat per file or
/// directory. RUN and the other verbs are trusted (`--skip-cache` is the escape).
async fn drifted(cx: &Cx<'_>, job: &Job, record: &JobRecord, rendered: &Rendered) -> Option<String> {
    let attrs = match &job.work {
        Work::Copy { attrs, .. } | Work::Workdir { attrs, .. } => attrs.clone(),
        _ => director_proto::Attrs::default(),
    };
    let stat = |path: &str| {
        let path = path.to_string();
        cx.session.call(move |id| Request::Stat { id, path, text_limit: 0 })
    };
    let changes = |path: &str, stat: &director_proto::FileStat| {
        let changes = diff::attr_changes(Some(stat), &attrs);
        (!changes.is_empty()).then(|| format!("{path} changed ({})", changes.join(", ")))
    };
    for (dest, sha3) in &record.files {
        match stat(dest).await {
            Ok(Done::Stat { stat: None }) => return Some(format!("{dest} is gone")),
            Ok(Done::Stat { stat: Some(s) }) if s.kind != "file" => return Some(format!("{dest} is no longer a file")),
            Ok(Done::Stat { stat: Some(s) }) if s.sha3.as_deref() != Some(sha3.as_str()) => {
                return Some(format!("{dest} was changed"))
            }
            Ok(Done::Stat { stat: Some(s) }) => {
                if let Some(why) = changes(dest, &s) {
                    return Some(why);
                }
            }
            Ok(_) | Err(_) => return Some(format!("{dest} could not be checked")),
        }
    }
    if let Work::Workdir { .. } = job.work {
        let path = &rendered.text;
        match stat(path).await {
            Ok(Done::Stat { stat: None }) => return Some(format!("{path} is gone")),
            Ok(Done::Stat { stat: Some(s) }) if s.kind != "dir" => {
                return Some(format!("{path} is no longer a directory"))
            }
            Ok(Done::Stat { stat: Some(s) }) => return changes(path, &s),
            Ok(_) | Err(_) => return Some(format!("{path} could not be checked")),
        }
    }
    None
}

/// The cache's answer, if it has one for this fingerprint and the node still matches it;
/// otherwise why not, when a record was there but the node no longer matches it.
async fn cached(cx: &Cx<'_>, job: &Job, fp: &str, rendered: &Rendered) -> Result<Finish, Option<String>> {
    if !job.cacheable() || job.skip_cache {
        return Err(None);
    }
    let record = cx.state().cache().jobs.get(fp).cloned().ok_or(None)?;
    if let Some(why) = drifted(cx, job, &record, rendered).await {
        return Err(Some(why));
    }
    let mut dirty = false;
    {
        let state = cx.state();
        let now = state.now();
        let mut cache = state.cache();
        for (k, v) in &record.args {
            dirty |= cache.set(Kind::Args, k, v.clone(), false, now, cx.config.args_ttl);
        }
    }
    // It says what it said when it ran, and that it did not run now.
    Ok(Finish {
        status: JobStatus::Cached,
        reason: Some(CACHED_HINT.to_string()),
        dirty,
        hit: true,
        ..Finish::ok(record.output)
    })
}

/// A plan's answer for a job (see [`super::preview`]): what a run would do with it, doing
/// only what changes the in-memory cache, so the jobs after it see what they would in a run.
async fn preview(
    cx: &Cx<'_>,
    job: &Job,
    fingerprint: &fingerprint::Fingerprint,
    rendered: &Rendered,
    cancel: watch::Receiver<u8>,
) -> Finish {
    if let Some(why) = cx.depends(&rendered.uses.keys().cloned().collect()) {
        return Finish::would_run(why);
    }
    let finish = match &job.work {
        Work::Arg { .. }
        | Work::CacheFile { .. }
        | Work::CacheEvict { .. }
        | Work::Query { .. }
        | Work::QueryWait { .. } => {
            // These verbs write no file: nothing goes out.
            let done = perform(cx, job, rendered, Vec::new(), cancel).await;
            match done.status {
                JobStatus::Ok => Finish::would_run(format!("it changes the node's cached values: {}", done.stdout)),
                JobStatus::Cached => Finish {
                    reason: Some("the node's cache already holds this".to_string()),
                    ..Finish::cache_only(false, "")
                },
                _ => done,
            }
        }
        _ if job.skip_cache => {
            Finish::would_run(cx.plan.forced.unwrap_or("--skip-cache: it runs whatever the cache says"))
        }
        _ if !job.cacheable() => Finish::would_run("a job like this always runs: it is never answered from the cache"),
        _ => match cached(cx, job, &fingerprint.hash, rendered).await {
            Ok(hit) => hit,
            Err(Some(drift)) => Finish::would_run(format!("was cached, but {drift}")),
            Err(None) => {
                let cache = cx.state().cache();
                let slot = fingerprint::slot(job, rendered.run_as.as_deref());
                let parts = fingerprint.parts(rendered);
                Finish::would_run(super::preview::why_new(
                    &parts,
                    super::preview::newest(&cache.jobs, &slot),
                    &cache.expired,
                ))
            }
        },
    };
    if finish.status == JobStatus::WouldRun {
        let captures: Vec<String> = job.stdout_arg.iter().chain(&job.stderr_arg).cloned().collect();
        if !captures.is_empty() {
            lock(&cx.state().pending).push(Pending { job: job.id, label: job.label(), captures });
        }
    }
    finish
}

/// `--diff`: says, as the job's output, what each file it is about to write changes on the
/// node (see [`super::diff`]).
async fn show_diff(cx: &Cx<'_>, job: &Job, outgoing: &[Outgoing]) {
    let attrs = match &job.work {
        Work::Copy { attrs, .. } => attrs.clone(),
        _ => director_proto::Attrs::default(),
    };
    for file in outgoing {
        let path = file.dest.clone();
        let text_limit = diff::TEXT_LIMIT;
        let text = match cx.session.call(|id| Request::Stat { id, path, text_limit }).await {
            Ok(Done::Stat { stat }) => {
                let local;
                let bytes = match &file.body {
                    Body::Rendered(b) if b.len() as u64 <= text_limit => Some(b.as_slice()),
                    Body::File(p) if file.size <= text_limit => {
                        local = tokio::fs::read(p).await.ok();
                        local.as_deref()
                    }
                    _ => None,
                };
                let new = diff::New { bytes, size: file.size, sha3: &file.sha3 };
                diff::describe(&file.dest, stat.as_ref(), &new, &attrs)
            }
            Ok(Done::Failed { message }) => Some(format!("{}: cannot tell what changes: {message}\n", file.dest)),
            Ok(other) => Some(format!("{}: cannot tell what changes: unexpected answer {other:?}\n", file.dest)),
            Err(e) => Some(format!("{}: cannot tell what changes: {e}\n", file.dest)),
        };
        if let Some(data) = text {
            let node = cx.node.name.clone();
            cx.sink.emit(Event::JobOutput { node, job: job.id, stream: Stream::Stdout, data }).await;
        }
    }
}

/// What a job's record keeps of its output: stdout then stderr, the last
/// [`super::cache::RECORDED_OUTPUT`] bytes (cut at a character boundary).
fn recorded_output(finish: &Finish) -> String {
    let all = format!("{}{}", finish.stdout, finish.stderr);
    let mut from = all.len().saturating_sub(super::cache::RECORDED_OUTPUT);
    while !all.is_char_boundary(from) {
        from += 1;
    }
    all[from..].to_string()
}

/// Stores captured args, records a success or a failure, saves the cache if it changed.
async fn record(
    cx: &Cx<'_>,
    job: &Job,
    fingerprint: &fingerprint::Fingerprint,
    rendered: &Rendered,
    finish: &mut Finish,
) -> Result<(), String> {
    let fp = &fingerprint.hash;
    let state = cx.state();
    let done_ok = matches!(finish.status, JobStatus::Ok | JobStatus::Cached);
    if done_ok && !finish.hit {
        let now = state.now();
        let mut captured = std::collections::BTreeMap::new();
        for (name, text) in [(&job.stdout_arg, &finish.stdout), (&job.stderr_arg, &finish.stderr)] {
            if let Some(name) = name {
                captured.insert(name.clone(), Value::String(text.trim().to_string()));
            }
        }
        let mut cache = state.cache();
        for (k, v) in &captured {
            finish.dirty |= cache.set(Kind::Args, k, v.clone(), false, now, cx.config.args_ttl);
        }
        if finish.status == JobStatus::Ok && job.cacheable() {
            cache.jobs.insert(
                fp.to_string(),
                JobRecord {
                    at: now,
                    verb: job.verb.clone(),
                    args: captured,
                    files: std::mem::take(&mut finish.files),
                    output: recorded_output(finish),
                    slot: fingerprint::slot(job, rendered.run_as.as_deref()),
                    parts: fingerprint.parts(rendered),
                },
            );
            finish.dirty = true;
        }
    } else if !done_ok {
        lock(&state.failed).insert(fp.to_string());
    }
    state.changed.notify_waiters();
    if finish.dirty {
        cx.save().await?;
    }
    Ok(())
}

/// Does the verb on the node.
async fn perform(
    cx: &Cx<'_>,
    job: &Job,
    r: &Rendered,
    outgoing: Vec<Outgoing>,
    mut cancel: watch::Receiver<u8>,
) -> Finish {
    let state = cx.state();
    match &job.work {
        Work::Run { retry, no_block, .. } => {
            let command = if *no_block {
                format!("(setsid /bin/sh -c {} </dev/null >/dev/null 2>&1 &)", sh_quote(&r.text))
            } else {
                r.text.clone()
            };
            let env = state.cache().env_pairs();
            let mut finish = Finish::failed("not run");
            for _ in 0..(*retry).max(1) {
                finish = command_finish(job, run_command(cx, job, &command, env.clone(), &mut cancel).await);
                if finish.status == JobStatus::Ok
                    || finish.status == JobStatus::Cancelled
                    || *cancel.borrow() != CANCEL_NONE
                {
                    break;
                }
            }
            finish
        }
        Work::Shell { .. } => {
            let env = state.cache().env_pairs();
            command_finish(job, run_command(cx, job, &r.text, env, &mut cancel).await)
        }
        Work::Send { .. } => {
            // Directord keeps the local file's mode.
            let mode = outgoing.first().and_then(|o| match &o.body {
                Body::File(p) => std::fs::metadata(p)
                    .ok()
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777),
                Body::Rendered(_) => None,
            });
            copy(cx, outgoing, &director_proto::Attrs { mode, ..Default::default() }).await
        }
        Work::Fetch { .. } => {
            let (remote, local) = (r.text.clone(), r.value.as_str().unwrap_or_default().to_string());
            let p = remote.clone();
            match cx.session.call(|id| Request::Read { id, path: p }).await {
                Ok(Done::Text { data }) => match write_local(&local, data.as_bytes()) {
                    Ok(()) => Finish::ok(format!("fetched {remote} to {local} ({} bytes)", data.len())),
                    Err(e) => Finish::failed(e),
                },
                Ok(Done::Failed { message }) => Finish::failed(message),
                Ok(other) => Finish::failed(format!("unexpected answer {other:?}")),
                Err(e) => Finish::failed(e),
            }
        }
        Work::Echo { text } => {
            let command = format!("printf '%s\\n' {}", sh_quote(text));
            command_finish(job, run_command(cx, job, &command, Vec::new(), &mut cancel).await)
        }
        Work::Wait { on, retry, retry_wait, insecure } => {
            let command = match on {
                WaitOn::Seconds(s) => format!("sleep {s}"),
                WaitOn::Url(_) => url_probe(&r.text, *insecure),
                WaitOn::Cmd(_) => r.text.clone(),
            };
            let attempts = if matches!(on, WaitOn::Seconds(_)) { 1 } else { retry + 1 };
            let env = state.cache().env_pairs();
            let work = async {
                let mut finish = Finish::failed("not run");
                for attempt in 0..attempts {
                    if attempt > 0 {
                        tokio::time::sleep(*retry_wait).await;
                    }
                    finish =
                        command_finish(job, run_command(cx, job, &command, env.clone(), &mut cancel.clone()).await);
                    if finish.status == JobStatus::Ok || *cancel.borrow() != CANCEL_NONE {
                        return finish;
                    }
                }
                if attempts > 1 {
                    finish.reason = Some(format!(
                        "still not ready after {attempts} attempts ({})",
                        finish.reason.unwrap_or_default()
                    ));
                }
                finish
            };
            match tokio::time::timeout(job.timeout, work).await {
                Ok(f) => f,
                Err(_) => Finish {
                    status: JobStatus::TimedOut,
                    reason: Some(format!("timed out after {} s", job.timeout.as_secs())),
                    ..Finish::ok("")
                },
            }
        }
        Work::Arg { env, key, extend, secret, .. } => {
            let kind = if *env { Kind::Envs } else { Kind::Args };
            if r.value.is_null() {
                return Finish::cache_only(
                    false,
                    format!("Nothing added to cache. {} had no value", if *env { "envs" } else { "args" }),
                );
            }
            let now = state.now();
            let changed = {
                let mut cache = state.cache();
                let set = cache.set(kind, key, r.value.clone(), *extend, now, cx.config.args_ttl);
                set | (*secret && cache.mark_secret(kind, key))
            };
            Finish::cache_only(changed, format!("{} added to cache", if *env { "envs" } else { "args" }))
        }
        Work::Workdir { attrs, .. } => {
            let path = r.text.clone();
            let attrs = attrs.clone();
            match cx.session.call(|id| Request::Mkdir { id, path, attrs }).await {
                Ok(Done::Ok) => Finish::ok(format!("Directory {} OK", r.text)),
                Ok(Done::Failed { message }) => Finish::failed(message),
                Ok(other) => Finish::failed(format!("unexpected answer {other:?}")),
                Err(e) => Finish::failed(e),
            }
        }
        Work::Copy { attrs, .. } => copy(cx, outgoing, attrs).await,
        Work::CacheFile { path } => {
            let p = path.clone();
            let text = match cx.session.call(|id| Request::Read { id, path: p }).await {
                Ok(Done::Text { data }) => data,
                Ok(Done::Failed { message }) => return Finish::failed(message),
                Ok(other) => return Finish::failed(format!("unexpected answer {other:?}")),
                Err(e) => return Finish::failed(e),
            };
            // The node wrote this text: it is parsed off the async threads, within the
            // parser's budgets (size, nesting, aliases).
            let parsed = tokio::task::spawn_blocking(move || crate::catalog::yaml::parse_value(&text))
                .await
                .unwrap_or_else(|e| Err(format!("the parser failed: {e}")));
            let value = match parsed {
                Ok(Value::Object(map)) => map,
                Ok(_) => return Finish::failed(format!("{path} on the node is not a mapping of args")),
                Err(e) => return Finish::failed(format!("{path} on the node is not YAML or JSON: {e}")),
            };
            let now = state.now();
            let mut cache = state.cache();
            let mut changed = false;
            for (k, v) in value {
                changed |= cache.set(Kind::Args, &k, v, true, now, cx.config.args_ttl);
            }
            Finish::cache_only(changed, "Cache file loaded")
        }
        Work::CacheEvict { tag } => {
            let changed = state.cache().evict(tag);
            if tag == "all" || tag == "jobs" {
                lock(&state.sent).clear();
            }
            Finish::cache_only(changed, format!("{tag} evicted from the cache"))
        }
        Work::Query { key } => {
            let own = state.cache().arg(key).cloned();
            let answers = match tokio::time::timeout(job.timeout, cx.shared.query(job.id, cx.index, own.clone())).await
            {
                Ok(a) => a,
                Err(_) => {
                    return Finish {
                        status: JobStatus::TimedOut,
                        reason: Some(format!("not every target reached this QUERY within {} s", job.timeout.as_secs())),
                        ..Finish::ok("")
                    }
                }
            };
            let mut map = serde_json::Map::new();
            for (node, value) in answers {
                let mut entry = serde_json::Map::new();
                if let Some(v) = value {
                    entry.insert(key.clone(), v);
                }
                map.insert(cx.plan.nodes[node].name.clone(), Value::Object(entry));
            }
            let now = state.now();
            let changed = state.cache().set(Kind::Args, "query", Value::Object(map), true, now, cx.config.args_ttl);
            Finish::cache_only(changed, json!({ key.as_str(): own }).to_string())
        }
        Work::QueryWait { item, timeout, identities } => {
            let ready = || {
                let cache = state.cache();
                let query = cache.arg("query")?.as_object()?.clone();
                let has = |node: &str| query.get(node).and_then(|v| v.get(item.as_str())).is_some();
                let ok = if identities.is_empty() {
                    query.keys().any(|n| has(n))
                } else {
                    identities.iter().all(|n| has(n))
                };
                ok.then_some(())
            };
            match tokio::time::timeout(*timeout, until(&state.changed, ready)).await {
                Ok(()) => Finish::ok(format!("query item {item} is known")),
                Err(_) => {
                    Finish::failed(format!("Timeout after {} seconds waiting for query item {item}", timeout.as_secs()))
                }
            }
        }
        Work::JobWait { fingerprint, identities } => {
            let mut outcome = Vec::new();
            for name in identities {
                let Some(other) = cx.plan.nodes.iter().position(|n| n.name == *name) else { continue };
                let st = &cx.shared.nodes[other];
                let seen = || {
                    if st.cache().jobs.contains_key(fingerprint) {
                        Some(Ok(()))
                    } else if lock(&st.failed).contains(fingerprint) {
                        Some(Err(format!("job {fingerprint} failed on {name}")))
                    } else if st.is_done() {
                        Some(Err(format!("{name} finished without running job {fingerprint}")))
                    } else {
                        None
                    }
                };
                match tokio::time::timeout(job.timeout, until(&st.changed, seen)).await {
                    Ok(Ok(())) => outcome.push(format!("{name}: done")),
                    Ok(Err(e)) => return Finish::failed(e),
                    Err(_) => {
                        return Finish::failed(format!(
                            "Timeout after {} seconds waiting for job {fingerprint} on {name}",
                            job.timeout.as_secs()
                        ))
                    }
                }
            }
            Finish::ok(outcome.join("\n"))
        }
        Work::QueueSentinel => {
            let from = format!("{} (run {}, job {})", cx.node.name, cx.config.run_id, job.id + 1);
            cx.session.drain(format!("omitted: queue sentinel from job {} of this run", job.id + 1));
            match cx.session.call(|id| Request::Sentinel { id, from }).await {
                Ok(Done::Text { data }) => Finish::ok(data),
                Ok(Done::Failed { message }) => Finish::failed(message),
                Ok(other) => Finish::failed(format!("unexpected answer {other:?}")),
                Err(e) => Finish::failed(e),
            }
        }
    }
}

/// Sends each file (or copies it on the node if this run already sent the same content).
async fn copy(cx: &Cx<'_>, outgoing: Vec<Outgoing>, attrs: &director_proto::Attrs) -> Finish {
    let state = cx.state();
    let mut hashes = Vec::new();
    let mut files = Vec::new();
    for file in outgoing {
        let earlier = lock(&state.sent).get(&file.sha3).cloned();
        let mut answer = Err(String::new());
        if let Some(from) = earlier {
            answer = cx
                .session
                .put(file.dest.clone(), file.size, file.sha3.clone(), attrs.clone(), Content::CopyOf(from))
                .await;
        }
        if !matches!(answer, Ok(Done::Ok)) {
            let content = match &file.body {
                Body::File(p) => Content::File(p),
                Body::Rendered(b) => Content::Bytes(b),
            };
            answer = cx.session.put(file.dest.clone(), file.size, file.sha3.clone(), attrs.clone(), content).await;
        }
        match answer {
            Ok(Done::Ok) => {
                lock(&state.sent).insert(file.sha3.clone(), file.dest.clone());
                hashes.push(file.sha3.clone());
                files.push((file.dest, file.sha3));
            }
            Ok(Done::Failed { message }) => return Finish::failed(message),
            Ok(other) => return Finish::failed(format!("unexpected answer {other:?}")),
            Err(e) => return Finish::failed(e),
        }
    }
    Finish { files, ..Finish::ok(hashes.join("\n")) }
}

/// Writes a fetched file on the operator atomically (a temp file renamed over it), mode 0600:
/// what is fetched from a node is often a key.
fn write_local(path: &str, bytes: &[u8]) -> Result<(), String> {
    crate::private::write_file(std::path::Path::new(path), bytes)
        .map_err(|e| format!("cannot write {path} on the operator: {}", crate::catalog::yaml::io_reason(&e)))
}

/// A shell command that succeeds when `url` answers 2xx or 3xx, with curl or wget.
fn url_probe(url: &str, insecure: bool) -> String {
    let u = sh_quote(url);
    let (k, nc) = if insecure { (" -k", " --no-check-certificate") } else { ("", "") };
    format!(
        "if command -v curl >/dev/null 2>&1; then c=$(curl -s{k} -o /dev/null -w '%{{http_code}}' --max-time 10 {u}); case \"$c\" in 2??|3??) exit 0;; esac; echo \"HTTP status $c\" >&2; exit 1; \
         elif command -v wget >/dev/null 2>&1; then exec wget -q{nc} -T 10 -O /dev/null {u}; \
         else echo 'WAIT --url needs curl or wget on the node' >&2; exit 127; fi"
    )
}

/// Quotes text for `/bin/sh` as one word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What one command on the node ended with, and what it printed (kept for the args).
struct Ran {
    outcome: Result<Outcome, String>,
    stdout: String,
    stderr: String,
}

fn command_finish(job: &Job, ran: Ran) -> Finish {
    let (status, exit_code, reason) = match ran.outcome {
        Ok(Outcome::Exited { code: 0 }) => (JobStatus::Ok, Some(0), None),
        Ok(Outcome::Exited { code }) => (JobStatus::Failed, Some(code), Some(format!("exited with code {code}"))),
        Ok(Outcome::Signaled { signal }) => (JobStatus::Failed, None, Some(format!("killed by signal {signal}"))),
        Ok(Outcome::TimedOut) => {
            (JobStatus::TimedOut, None, Some(format!("timed out after {} s", job.timeout.as_secs())))
        }
        Ok(Outcome::Cancelled) => (JobStatus::Cancelled, None, Some("cancelled".to_string())),
        Ok(Outcome::SpawnFailed { message }) => {
            (JobStatus::Failed, None, Some(format!("could not start /bin/sh: {message}")))
        }
        Err(lost) => (JobStatus::Failed, None, Some(lost)),
    };
    Finish { status, exit_code, reason, stdout: ran.stdout, stderr: ran.stderr, ..Finish::ok("") }
}

/// Internal events of one command, so the select below only translates inputs.
enum Step {
    Reply(Option<Reply>),
    Cancel,
}

async fn run_command(
    cx: &Cx<'_>,
    job: &Job,
    command: &str,
    env: Vec<(String, String)>,
    cancel: &mut watch::Receiver<u8>,
) -> Ran {
    let mut ran = Ran { outcome: Err(String::new()), stdout: String::new(), stderr: String::new() };
    let (id, mut replies) = match cx.session.run(command.to_string(), env, job.timeout).await {
        Ok(x) => x,
        Err(e) => {
            ran.outcome = Err(e);
            return ran;
        }
    };
    let mut kill_sent = false;
    loop {
        let step = tokio::select! {
            reply = replies.recv() => Step::Reply(reply),
            changed = cancel.changed(), if !kill_sent => match changed {
                Ok(()) if *cancel.borrow() >= CANCEL_KILL => Step::Cancel,
                Ok(()) => continue,
                Err(_) => { kill_sent = true; continue }
            },
        };
        match step {
            Step::Cancel => {
                kill_sent = true;
                cx.session.cancel(id).await;
            }
            Step::Reply(None) => {
                ran.outcome = Err(cx.session.lost().unwrap_or_else(|| "connection to the executor lost".to_string()));
                return ran;
            }
            Step::Reply(Some(Reply::Output { stream, data, .. })) => {
                let (stream, keep) = match stream {
                    director_proto::Stream::Stdout => (Stream::Stdout, &mut ran.stdout),
                    director_proto::Stream::Stderr => (Stream::Stderr, &mut ran.stderr),
                };
                if keep.len() < CAPTURE_LIMIT {
                    keep.push_str(&data);
                }
                cx.sink.emit(Event::JobOutput { node: cx.node.name.clone(), job: job.id, stream, data }).await;
            }
            Step::Reply(Some(Reply::Finished { outcome, .. })) => {
                ran.outcome = Ok(outcome);
                return ran;
            }
            Step::Reply(Some(_)) => {}
        }
    }
}
