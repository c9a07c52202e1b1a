//! One job on one node, from templates to the cache record.
//!
//! The steps: render the job's templates with the node's cached args (an undefined variable
//! fails the job here, naming the variable, the job and the node); compute its fingerprint;
//! answer it from the node cache when it is cacheable, not `--skip-cache`, recorded as a
//! success, and the node still matches the record (the verb's own check,
//! [`crate::verb::Verb::verify`]); otherwise do the verb (one that ran because the node no
//! longer matched says why); then store `--stdout-arg`/`--stderr-arg`, record the success,
//! and save the cache on the node. What each verb does is its own module's ([`crate::verb`]);
//! this module does what is the same for every job.

use super::NodeRun;
use crate::catalog::template::{Context, Renderer, Stop};
use crate::catalog::Node;
use crate::event::{Event, JobStatus, RunMode, Stream};
use crate::node::cache::{JobRecord, Kind, Parts};
use crate::node::diff;
use crate::node::preview::Pending;
use crate::node::shared::lock;
use crate::node::{CancelLevel, Checked, Cx, Finish};
use crate::plan::fingerprint;
use crate::plan::{Job, Work};
use crate::verb::{Body, Outgoing, Render, Rendered, Task};
use director_proto::{Done, Request};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// Why a job whose own check found what it would do already done did not run.
pub(crate) const NOTHING_TO_DO: &str = "already as asked on the node: nothing to do";

/// Why a job answered from its record did not run.
pub(crate) const CACHED_HINT: &str = "done before with this exact fingerprint (--ignore-cache runs it again)";

/// Largest `--blueprint` template (it is rendered in memory).
const BLUEPRINT_LIMIT: u64 = 16 * 1024 * 1024;

/// A job rendered, with the files it sends: boxed, as it waits in a node's future (inline, it
/// sized every state of every node's job, 264 bytes twice).
pub(crate) type Ready = Box<(Rendered, Vec<Outgoing>)>;

/// Runs `job` on the node and reports it; returns its status.
pub(crate) async fn run_job(
    nr: &NodeRun<'_>,
    job: &Job,
    cancel: watch::Receiver<CancelLevel>,
    ready: Option<Ready>,
) -> JobStatus {
    let cx = &nr.cx;
    let started = Instant::now();
    let planning = nr.config.mode == RunMode::Plan;
    let prepared = if let Some(ready) = ready {
        Ok(Ok(ready))
    } else if job.heavy() {
        let stop = Stop::armed();
        within(prepare(nr, job, Some(&stop)), job, cancel.clone(), &stop).await.map(|r| r.map(Box::new))
    } else {
        Ok(prepare(nr, job, None).await.map(Box::new))
    };
    let finish = match prepared {
        Err(interrupted) => interrupted,
        // A plan cannot render a job that needs what a job before it would capture.
        Ok(Err(reason)) => match if planning { depends_unrendered(nr, job).await } else { None } {
            Some(why) => Finish::would_run(why),
            None => Finish::failed(format!("{reason} (job {} `{}` on node {})", job.id + 1, job.label(), cx.node.name)),
        },
        Ok(Ok(mut ready)) => {
            let outgoing = std::mem::take(&mut ready.1);
            let rendered = &ready.0;
            // A secret is known as rendered on this node before anything about the job is said.
            if job.work.secret().is_some() {
                cx.sink.secrets.add_value(&rendered.value);
            }
            let fingerprint = fingerprint::of(job, rendered, &nr.config.seal);
            let fp = &fingerprint.hash;
            let info = rendered_info(job, rendered);
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
                // Boxed: a plan's path, kept out of the size of every job's future.
                let finish = Box::pin(preview(nr, job, &fingerprint, rendered, cancel, started)).await;
                if finish.status == JobStatus::WouldRun && nr.config.diff {
                    show_diff(cx, job, &outgoing).await;
                }
                finish
            } else {
                match lookup(cx, job, fp, rendered).await {
                    Lookup::Hit(hit) => *hit,
                    Lookup::Do { drift, recorded } => {
                        if nr.config.diff {
                            show_diff(cx, job, &outgoing).await;
                        }
                        // What was asked of the node ahead may not hold after this job.
                        if !job.work.traits().cache_only {
                            cx.moved();
                        }
                        let task = Task { job: job.reference(started), rendered, outgoing, cancel, recorded };
                        let mut finish = job.work.perform(cx, task).await;
                        // What the verb's own check found counts as drift only against a record.
                        match (finish.status, drift.or(finish.drift.take().filter(|_| recorded))) {
                            // Its check found the record still holds: a cache hit.
                            (JobStatus::Cached, _) if recorded => finish = hit_of(cx, fp).unwrap_or(finish),
                            // A record the node no longer matches: the job ran again, and says why.
                            (JobStatus::Ok, Some(why)) => {
                                finish.reason = Some(format!("was cached, but {why}: done again"));
                            }
                            _ => {}
                        }
                        finish
                    }
                }
            };
            // Verbs that run no command say what they did as their output; a job answered
            // from its record says what it printed when it ran.
            if (!job.work.traits().streams_output || finish.hit) && !finish.stdout.is_empty() {
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
                if let Err(e) = record(cx, job, &fingerprint, rendered, &mut finish).await {
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
        // A reboot that did not come back says so itself.
        (JobStatus::Failed, Some(lost)) if !job.work.traits().reboots => Finish {
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
    cx.report(Event::JobFinished {
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

/// Before the jobs of a group (an entry) on a node, and again after one of them did something
/// there: what the records of the cached jobs that follow will be checked against is asked of
/// the node at once ([`Cx::look_ahead`]), up to the first job that will do something there (it
/// would change the answers). Each job is rendered and
/// fingerprinted here with what the node's cache holds now, as it will be when its turn
/// comes unless a job before it captures something new; a guess that turns out wrong costs
/// the node a stat, never a wrong answer (the job's own check asks again).
///
/// The first job's rendering, made with what it will be run with (nothing happens between),
/// is handed back for [`run_job`] to use (a heavy one renders again there, where it can be
/// cancelled).
pub(crate) async fn look_ahead(nr: &NodeRun<'_>, group: &[usize]) -> Option<Ready> {
    let cx = &nr.cx;
    // Only as far as the last job checked that way, and not at all on a node with no records.
    let last = group.iter().rposition(|&j| nr.plan.jobs[j].work.traits().probes)?;
    if cx.state().cache().jobs.is_empty() {
        return None;
    }
    let (mut paths, mut first) = (Vec::new(), None);
    for (i, &j) in group[..=last].iter().enumerate() {
        let job = &nr.plan.jobs[j];
        if job.work.traits().cache_only {
            continue;
        }
        if !job.cacheable() || job.skips_cache() {
            break;
        }
        let stop = Stop::armed();
        let Ok((rendered, outgoing)) = prepare(nr, job, job.heavy().then_some(&stop)).await else { break };
        let fp = fingerprint::of(job, &rendered, &nr.config.seal).hash;
        let record = cx.state().cache().jobs.get(&fp).cloned();
        let holds = record.is_some() && job.work.check(&rendered, true).is_none();
        if let (Some(record), true) = (&record, holds && nr.executors.runs_own(cx.node, job)) {
            paths.extend(job.work.probes(record, &rendered));
        }
        if i == 0 && !job.heavy() {
            first = Some(Box::new((rendered, outgoing)));
        }
        if !holds {
            break;
        }
    }
    cx.look_ahead(paths).await;
    first
}

/// In a plan, for a job that could not be rendered: whether it uses (in its arguments or its
/// `--blueprint` files) an arg a job before it would capture.
async fn depends_unrendered(nr: &NodeRun<'_>, job: &Job) -> Option<String> {
    let blueprints = read_blueprints(&job.work).await.unwrap_or_default();
    let texts: Vec<&str> = job.work.templates().into_iter().chain(blueprints.iter().map(String::as_str)).collect();
    nr.cx.depends(&nr.renderer.uses_all(&texts))
}

/// The events of a job that could not start because its account's executor did not: it
/// starts and fails with `reason`.
pub(crate) fn failed_to_start(node: &Node, job: &Job, reason: String) -> Event {
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
    crate::event::ellipsize(&job.work.info(r).unwrap_or_else(|| job.label()), 4096)
}

/// Waits for `preparing` (the job's rendering) within the job's timeout and until the run is
/// cancelled, in either mode: the job has not started on the node, so even a drain does not
/// wait for it. When it cannot wait longer, it tells the rendering to stop and ends the job.
async fn within<T>(
    preparing: impl std::future::Future<Output = T>,
    job: &Job,
    mut cancel: watch::Receiver<CancelLevel>,
    stop: &Stop,
) -> Result<T, Finish> {
    let cancelled = async {
        if cancel.wait_for(|level| *level != CancelLevel::None).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let interrupted = tokio::select! {
        prepared = preparing => return Ok(prepared),
        () = tokio::time::sleep(job.timeout) => Finish::timed_out(format!(
            "timed out after {} s while rendering its templates",
            job.timeout.as_secs()
        )),
        () = cancelled => Finish {
            status: JobStatus::Cancelled,
            reason: Some("cancelled while rendering its templates".to_string()),
            ..Finish::ok("")
        },
    };
    stop.stop();
    Err(interrupted)
}

/// Renders the job's templates with the node's args and, for ADD/COPY, works out each
/// destination and content hash. A heavy job ([`Job::heavy`]) has a `stop`: it is rendered on
/// a blocking thread, which `stop` ends early ([`within`]); any other is rendered in place.
async fn prepare(nr: &NodeRun<'_>, job: &Job, stop: Option<&Stop>) -> Result<(Rendered, Vec<Outgoing>), String> {
    let cx = &nr.cx;
    let state = cx.state();
    let blueprints = read_blueprints(&job.work).await?;
    // The context holds only the variables the job's templates read (and `facts`): a job
    // copies what it uses, not every cached arg (a QUERY's map of every node in each node's
    // context made time and memory quadratic in the fleet's size).
    let texts: Vec<&str> = job.work.templates().into_iter().chain(blueprints.iter().map(String::as_str)).collect();
    let names = nr.renderer.uses_all(&texts);
    let (args, env) = {
        let cache = state.cache();
        let mut vars = std::collections::BTreeMap::new();
        for name in names {
            // The catalog's vars for the node are the defaults; what its cache holds (ARG,
            // QUERY…) wins over them, and the plan's own extras (bootstrap's catalog) over both.
            // The cache's values are shared, not copied.
            let extra = nr.plan.vars.get(cx.index).and_then(|v| v.get(&name));
            let value = match extra {
                Some(v) => Some(Arc::new(v.clone())),
                None => cache.arg_shared(&name).or_else(|| cx.node.vars.get(&name).map(|v| Arc::new(v.clone()))),
            };
            if let Some(value) = value {
                vars.insert(name, value);
            }
        }
        // `facts` is always the node's: what it said of itself when its executor started.
        vars.insert("facts".to_string(), Arc::new(Value::Object(lock(&state.facts).clone())));
        let mut context = nr.renderer.context(vars);
        if let Some(stop) = stop {
            context = context.stopped_by(stop);
        }
        (context, cache.env_map())
    };
    let run_as = job.account(cx.node).user().map(str::to_string);
    if stop.is_none() {
        // Nothing to render, hash or look up: no thread hop.
        return render_work(nr.renderer, &job.work, &args, env, blueprints, &nr.config.seal)
            .map(|(r, out)| (Rendered { run_as, ..r }, out));
    }
    // Rendering, hashing and looking up files are CPU work: they run on a blocking thread,
    // so a heavy template never stalls the other nodes, and fuel bounds the template work.
    let (renderer, work, seal) = (nr.renderer.clone(), job.work.clone(), nr.config.seal.clone());
    tokio::task::spawn_blocking(move || render_work(&renderer, &work, &args, env, blueprints, &seal))
        .await
        .map_err(|e| format!("rendering failed: {e}"))?
        .map(|(r, out)| (Rendered { run_as, ..r }, out))
}

/// The texts of the job's blueprints ([`crate::verb::Verb::blueprints`]), in order.
async fn read_blueprints(work: &Work) -> Result<Vec<String>, String> {
    let mut texts = Vec::new();
    for source in work.blueprints() {
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
    context: &Context,
    env: serde_json::Map<String, Value>,
    blueprints: Vec<String>,
    seal: &fingerprint::Seal,
) -> Result<(Rendered, Vec<Outgoing>), String> {
    // The variables the templates read are noted from the parse they render with.
    let used = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let render = |t: &str| renderer.render_noting(t, context, Some(&mut used.borrow_mut()));
    let facts = context.get("facts").unwrap_or(&Value::Null);
    let mut into = Render::new(&render, facts, blueprints, Rendered { env, ..Rendered::default() });
    work.render(&mut into)?;
    let (mut r, outgoing) = (into.rendered, into.outgoing);
    r.uses = used
        .into_inner()
        .into_iter()
        .map(|name| {
            let value = context.get(&name).map(|v| seal.short(v)).unwrap_or_default();
            (name, value)
        })
        .collect();
    Ok((r, outgoing))
}

/// What the node cache says of a job before it runs.
enum Lookup {
    /// Answered from its record, which the node still matches (boxed: the answer is held
    /// while the job runs).
    Hit(Box<Finish>),
    /// To do. `drift`: why the node no longer matches the record it has; `recorded`: it has
    /// one, which the verb's own check ([`crate::verb::Verb::check`]) checks as it runs.
    Do { drift: Option<String>, recorded: bool },
}

/// The cache's answer for this fingerprint: a hit when it has a record and the node still
/// matches it (checked by the verb, [`crate::verb::Verb::verify`]).
async fn lookup(cx: &Cx<'_>, job: &Job, fp: &str, rendered: &Rendered) -> Lookup {
    let to_do = Lookup::Do { drift: None, recorded: false };
    if !job.cacheable() || job.skips_cache() {
        return to_do;
    }
    let Some(record) = cx.state().cache().jobs.get(fp).cloned() else { return to_do };
    if job.work.check(rendered, true).is_some() {
        return Lookup::Do { drift: None, recorded: true };
    }
    if let Some(why) = job.work.verify(cx, &record, rendered).await {
        return Lookup::Do { drift: Some(why), recorded: false };
    }
    Lookup::Hit(Box::new(hit(cx, record)))
}

/// [`hit`] for the record of `fp`, if the node cache has one.
fn hit_of(cx: &Cx<'_>, fp: &str) -> Option<Finish> {
    let record = cx.state().cache().jobs.get(fp).cloned()?;
    Some(hit(cx, record))
}

/// A job answered from its record: the args it captured are restored, and it says what it
/// said when it ran, and that it did not run now.
fn hit(cx: &Cx<'_>, record: JobRecord) -> Finish {
    let state = cx.state();
    let now = state.now();
    let mut cache = state.cache();
    let mut dirty = false;
    for (k, v) in &record.args {
        dirty |= cache.set(Kind::Args, k, v.clone(), false, now, cx.args_ttl);
    }
    Finish {
        status: JobStatus::Cached,
        reason: Some(CACHED_HINT.to_string()),
        dirty,
        hit: true,
        ..Finish::ok(record.output)
    }
}

/// A plan's answer for a job (see [`super::preview`]): what a run would do with it, doing
/// only what changes the in-memory cache, so the jobs after it see what they would in a run.
async fn preview(
    nr: &NodeRun<'_>,
    job: &Job,
    fingerprint: &fingerprint::Fingerprint,
    rendered: &Rendered,
    cancel: watch::Receiver<CancelLevel>,
    started: Instant,
) -> Finish {
    let cx = &nr.cx;
    if let Some(why) = cx.depends(&rendered.uses.keys().cloned().collect()) {
        return Finish::would_run(why);
    }
    let finish = match &job.work {
        work if work.traits().cache_only => {
            // These verbs write no file: nothing goes out.
            let task = Task { job: job.reference(started), rendered, outgoing: Vec::new(), cancel, recorded: false };
            let done = work.perform(cx, task).await;
            match done.status {
                JobStatus::Ok => Finish::would_run(format!("it changes the node's cached values: {}", done.stdout)),
                JobStatus::Cached => Finish {
                    reason: Some("the node's cache already holds this".to_string()),
                    ..Finish::cache_only(false, "")
                },
                _ => done,
            }
        }
        _ if job.skips_cache() => {
            Finish::would_run(nr.plan.forced.as_deref().unwrap_or("--skip-cache: it runs whatever the cache says"))
        }
        _ if !job.cacheable() => Finish::would_run("a job like this always runs: it is never answered from the cache"),
        _ => match lookup(cx, job, &fingerprint.hash, rendered).await {
            Lookup::Hit(hit) => *hit,
            Lookup::Do { drift: Some(drift), .. } => Finish::would_run(format!("was cached, but {drift}")),
            Lookup::Do { recorded, .. } if job.work.check(rendered, recorded).is_some() => {
                // Only the check runs: "true" stands for the work it would let through.
                let check = job.work.check(rendered, recorded);
                let env = cx.state().cache().env_pairs();
                match cx.checked_command(job.reference(started), check, "true", env, &mut cancel.clone()).await {
                    (done, _) if done.status == JobStatus::Cached && recorded => {
                        hit_of(cx, &fingerprint.hash).unwrap_or(done)
                    }
                    (done, _) if done.status == JobStatus::Cached => {
                        Finish { reason: Some(NOTHING_TO_DO.to_string()), ..done }
                    }
                    (_, Checked::Unheld(why)) if recorded => Finish::would_run(format!("was cached, but {why}")),
                    (_, Checked::Unheld(why)) => Finish::would_run(why),
                    (done, _) => done,
                }
            }
            Lookup::Do { .. } => {
                let cache = cx.state().cache();
                let slot = fingerprint::slot(job, rendered.run_as.as_deref());
                let parts = fingerprint.parts(rendered);
                Finish::would_run(crate::node::preview::why_new(
                    &parts,
                    crate::node::preview::newest(&cache.jobs, &slot),
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
    let attrs = job.work.attrs();
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
                diff::describe(&file.dest, stat.as_deref(), &new, &attrs)
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
            finish.dirty |= cache.set(Kind::Args, k, v.clone(), false, now, cx.args_ttl);
        }
        if finish.status == JobStatus::Ok && job.cacheable() {
            cache.put_job(
                fp,
                JobRecord {
                    at: now,
                    verb: job.verb.clone(),
                    args: captured,
                    files: std::mem::take(&mut finish.files),
                    output: recorded_output(finish),
                    slot: fingerprint::slot(job, rendered.run_as.as_deref()),
                    parts: Parts::of(&fingerprint.parts(rendered)),
                },
            );
            finish.dirty = true;
        }
    } else if !done_ok {
        lock(&state.failed).insert(fp.clone());
    }
    state.changed.notify_waiters();
    if finish.dirty {
        cx.save_soon(Some(format!("job {} ({})", job.id + 1, job.label())))?;
    }
    Ok(())
}
