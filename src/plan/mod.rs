//! The plan: catalog + orchestrations + selection → which job runs on which node.
//!
//! Synchronous and offline: nothing here touches the network. It resolves each entry's targets
//! against the catalog (node names first, then hosts), applies `--restrict`, and parses each
//! job with [`crate::verb`] (ADD/COPY sources are found and hashed here, on the operator). Every
//! mistake becomes an input error with file:line:column. A job's fingerprint is not known
//! here: it covers the command as rendered on each node, so the engine computes it with
//! [`fingerprint`] just before the job would run.

pub(crate) mod batch;
pub(crate) mod bootstrap;
#[cfg(test)]
mod cases;
pub(crate) mod fingerprint;
pub(crate) mod orchestration;
pub(crate) mod select;

use crate::catalog::yaml::{child, Document, Seg};
use crate::catalog::{Account, Catalog, Node};
use crate::error::Error;
use crate::plan::orchestration::{BecomeSpec, JobSpec, Orchestration, TargetRef};
use crate::verb;
pub(crate) use crate::verb::{Work, DEFAULT_TIMEOUT};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// Position in the whole run, from 0; stable across nodes.
    pub id: usize,
    /// Index of the entry (across all files) this job belongs to.
    pub entry: usize,
    pub name: Option<String>,
    pub verb: String,
    pub work: Work,
    pub timeout: Duration,
    pub run_once: bool,
    /// Whether the node cache answers it and records it (`--skip-cache` on the job,
    /// `--ignore-cache` on the run).
    pub cache: CacheUse,
    pub stdout_arg: Option<String>,
    pub stderr_arg: Option<String>,
    /// Indices into [`Plan::nodes`].
    pub targets: Vec<usize>,
    /// The job as written in its file, for the history.
    pub definition: serde_json::Value,
    /// Its `become` and `become_user`, over its entry's.
    pub becomes: BecomeSpec,
}

impl Job {
    /// Job `id` of entry `entry`, `verb` parsed: no name, no targets yet, its definition
    /// unset.
    pub(crate) fn parsed(verb: &str, parsed: crate::verb::Parsed, id: usize, entry: usize) -> Job {
        Job {
            id,
            entry,
            name: None,
            verb: verb.to_string(),
            work: parsed.work,
            timeout: parsed.timeout,
            run_once: parsed.run_once,
            cache: CacheUse::given(parsed.skip_cache),
            stdout_arg: parsed.stdout_arg,
            stderr_arg: parsed.stderr_arg,
            targets: Vec::new(),
            definition: serde_json::Value::Null,
            becomes: BecomeSpec::default(),
        }
    }

    /// The job as its node runs it, begun at `started`: its place in the run and its time
    /// limit.
    pub fn reference(&self, started: std::time::Instant) -> crate::node::JobRef {
        crate::node::JobRef { id: self.id, timeout: self.timeout, started }
    }

    /// Who the job runs as on `node`.
    pub fn account(&self, node: &Node) -> Account {
        node.becomes.account(self.becomes.enabled, self.becomes.user.as_deref())
    }

    /// How the job is shown to a person: its name, or its verb and arguments cut at 60
    /// characters.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.spelled(Some(60)),
        }
    }

    /// The job's whole name, for events and the history: its name, or its verb and all its
    /// arguments on one line.
    pub fn full_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.spelled(None),
        }
    }

    /// The verb and its arguments on one line, cut at `cut` characters.
    fn spelled(&self, cut: Option<usize>) -> String {
        let args = self.work.spelled();
        let one_line = args.split_whitespace().collect::<Vec<_>>().join(" ");
        let shown = crate::event::ellipsize(&one_line, cut.unwrap_or(usize::MAX));
        format!("{} {shown}", self.verb).trim_end().to_string()
    }

    /// Whether preparing the job on a node is CPU work worth a blocking thread: a template to
    /// render, a blueprint, or a bootstrap source to find and hash.
    pub fn heavy(&self) -> bool {
        self.work.traits().heavy || self.work.templates().into_iter().any(crate::catalog::template::is_template)
    }

    /// Whether a success is recorded in the node cache and answered from it next time.
    pub fn cacheable(&self) -> bool {
        self.work.traits().cacheable && self.cache != CacheUse::Never
    }

    /// `--skip-cache`: it runs whatever the cache says.
    pub fn skips_cache(&self) -> bool {
        self.cache == CacheUse::Skip
    }
}

/// How a job uses the node cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CacheUse {
    /// A cacheable job is answered from the cache when its record still holds, and its
    /// success is recorded.
    Use,
    /// `--skip-cache` (or `--ignore-cache`): never answered from the cache, its success is
    /// still recorded.
    Skip,
    /// Bootstrap's jobs: never answered from the cache, never recorded.
    Never,
}

impl CacheUse {
    /// The use a job's `--skip-cache` (`skip`) asks for.
    pub fn given(skip: bool) -> CacheUse {
        if skip {
            CacheUse::Skip
        } else {
            CacheUse::Use
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlannedEntry {
    pub name: Option<String>,
    /// sha3-224 of the entry as written (canonical JSON), the key of its "parents" record
    /// (sealed when it holds a secret: [`Plan::seal`]).
    pub fingerprint: String,
    /// The entry as written, canonical JSON: what [`PlannedEntry::fingerprint`] hashes.
    pub written: String,
    pub is_async: bool,
    pub jobs: Vec<usize>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// Only the nodes some job runs on, in catalog order.
    pub nodes: Vec<Node>,
    pub entries: Vec<PlannedEntry>,
    pub jobs: Vec<Job>,
    /// Template variables of each node beyond its cached args (bootstrap's catalog and
    /// `directord_bootstrap`); empty for orchestrations.
    pub vars: Vec<serde_json::Map<String, serde_json::Value>>,
    pub schedule: Schedule,
    /// Why every job runs whatever the node caches say, when they all do (`--ignore-cache`,
    /// an ad-hoc command, bootstrap): a plan's reason for them.
    pub forced: Option<std::borrow::Cow<'static, str>>,
    /// `--serial` or an entry's `serial:`: the nodes run in batches ([`batch`]).
    pub batching: Option<batch::Batching>,
    /// The catalog nodes some of [`Plan::nodes`] name as their `relay:` (the sites'
    /// gateways), in catalog order; the engine reaches those nodes through them.
    pub relays: Vec<Node>,
    /// In a relay's part of a plan ([`Plan::part`]): every target of each QUERY, by name, in
    /// the whole run's order (the targets beyond this part arrive from elsewhere).
    #[serde(default)]
    pub query_targets: Vec<(usize, Vec<String>)>,
}

/// In what order the engine takes the nodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Schedule {
    /// Every node at once (connections are paced by the transport).
    Together,
    /// `servers` one after another, then the other nodes, `threads` at a time; when a server
    /// fails, the others are not attempted.
    Bootstrap { servers: Vec<usize>, threads: usize },
}

/// Every job as written, with its file, in the order of [`Plan::jobs`].
fn job_specs(orchestrations: &[Orchestration]) -> Vec<(&Document, &JobSpec)> {
    orchestrations
        .iter()
        .flat_map(|o| o.entries.iter().flat_map(move |e| e.jobs.iter().map(move |j| (&o.doc, j))))
        .collect()
}

/// The run's batches: `--serial`, else the one `serial:` its entries give.
fn batching(orchestrations: &[Orchestration], selection: &Selection) -> Result<Option<batch::Batching>, Error> {
    let mut given: Option<batch::Portion> = None;
    for orch in orchestrations {
        for entry in &orch.entries {
            match (entry.serial, given) {
                (Some(s), Some(g)) if s != g && selection.serial.is_none() => {
                    return Err(orch
                        .doc
                        .error_at(&child(&entry.path, "serial"), format!("`serial: {s}` differs from the `serial: {g}` of an entry before it"))
                        .hint("director runs the whole orchestration in one set of batches: give `serial` once (or the same on every entry), or --serial on the command line"));
                }
                (Some(s), None) => given = Some(s),
                _ => {}
            }
        }
    }
    match (selection.serial.or(given), selection.max_fail) {
        (Some(size), max_fail) => Ok(Some(batch::Batching { size, max_fail })),
        (None, Some(_)) => Err(Error::input("--max-fail needs batches")
            .hint("give --serial N or N% (or `serial:` on an entry): the threshold is checked between batches")),
        (None, None) => Ok(None),
    }
}

/// What the user asked for beyond the files.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--restrict`: a selection ([`select`]); empty means no restriction.
    pub restrict: Vec<String>,
    /// `exec --target`: a selection too, which `--restrict` narrows.
    pub targets: Vec<String>,
    /// `--ignore-cache`: every job runs, whatever the node caches say.
    pub ignore_cache: bool,
    /// `--retry-failed`: only these node names (after `restrict`).
    pub only: Option<Vec<String>>,
    /// `--serial`: over any entry's `serial:`.
    pub serial: Option<batch::Portion>,
    /// `--max-fail`.
    pub max_fail: Option<batch::Portion>,
}

impl Plan {
    pub fn build(catalog: &Catalog, orchestrations: &[Orchestration], selection: &Selection) -> Result<Plan, Error> {
        let allowed = selection.mask(catalog)?;
        let mut jobs = Vec::new();
        let mut entries = Vec::new();
        for orch in orchestrations {
            for entry in &orch.entries {
                let entry_targets = match &entry.targets {
                    Some(t) => resolve(catalog, &orch.doc, t)?,
                    None => (0..catalog.nodes.len()).collect(),
                };
                let raw = match entry.path.first() {
                    Some(Seg::Index(k)) => orch.doc.root[*k].clone(),
                    _ => serde_json::Value::Null,
                };
                let written = fingerprint::canonical(&raw);
                let fingerprint = fingerprint::hash(&written);
                let mut planned = PlannedEntry {
                    name: entry.name.clone(),
                    fingerprint,
                    written,
                    is_async: entry.is_async,
                    jobs: Vec::new(),
                };
                for spec in &entry.jobs {
                    let mut job = plan_job(&orch.doc, spec, jobs.len(), entries.len())?;
                    job.becomes = spec.becomes.over(&entry.becomes);
                    if selection.ignore_cache && job.cache == CacheUse::Use {
                        job.cache = CacheUse::Skip;
                    }
                    let targets = match &spec.assign {
                        Some(a) => resolve(catalog, &orch.doc, a)?,
                        None => entry_targets.clone(),
                    };
                    let mut targets: Vec<usize> = targets.into_iter().filter(|&i| allowed[i]).collect();
                    // Directord's QUERY ignores --run-once: it asks every target.
                    if job.run_once && !job.work.traits().gathers {
                        targets.truncate(1);
                    }
                    job.targets = targets;
                    planned.jobs.push(job.id);
                    jobs.push(job);
                }
                entries.push(planned);
            }
        }
        // Keep only the nodes something runs on, and renumber targets to match.
        let mut used = vec![false; catalog.nodes.len()];
        for job in &jobs {
            for &t in &job.targets {
                used[t] = true;
            }
        }
        let mut renumber = vec![usize::MAX; catalog.nodes.len()];
        let mut nodes = Vec::new();
        for (i, node) in catalog.nodes.iter().enumerate() {
            if used[i] {
                renumber[i] = nodes.len();
                nodes.push(node.clone());
            }
        }
        for job in &mut jobs {
            for t in &mut job.targets {
                *t = renumber[*t];
            }
        }
        let vars = vec![serde_json::Map::new(); nodes.len()];
        let forced = selection.ignore_cache.then_some("--ignore-cache: every job runs".into());
        let batching = batching(orchestrations, selection)?;
        let relays = catalog
            .nodes
            .iter()
            .filter(|r| nodes.iter().any(|n| n.relay.as_ref().is_some_and(|to| to.name == r.name)))
            .cloned()
            .collect();
        let plan = Plan {
            nodes,
            entries,
            jobs,
            vars,
            schedule: Schedule::Together,
            forced,
            batching,
            relays,
            query_targets: Vec::new(),
        };
        plan.check_relays(orchestrations)?;
        plan.check_identities(orchestrations)?;
        plan.check_reboots(orchestrations)?;
        if plan.batching.is_some() {
            plan.check_batchable(orchestrations)?;
        }
        Ok(plan)
    }

    /// The jobs of `node` in the order its lanes will run them: one lane for every non-async
    /// entry in order (Directord's single per-node queue), one lane per async entry.
    pub fn lanes(&self, node: usize) -> Vec<Vec<Vec<usize>>> {
        let mut general: Vec<Vec<usize>> = Vec::new();
        let mut lanes = Vec::new();
        for entry in &self.entries {
            let jobs: Vec<usize> =
                entry.jobs.iter().copied().filter(|&j| self.jobs[j].targets.contains(&node)).collect();
            if jobs.is_empty() {
                continue;
            }
            if entry.is_async {
                lanes.push(vec![jobs]);
            } else {
                general.push(jobs);
            }
        }
        if !general.is_empty() {
            lanes.insert(0, general);
        }
        lanes
    }

    /// What a run through relays cannot do yet: batches (the relays would have to take turns),
    /// and QUERY_WAIT and JOB_WAIT on nodes behind a relay (they read other nodes' caches,
    /// which may be on another site). QUERY crosses sites ([`crate::node::shared`]).
    fn check_relays(&self, orchestrations: &[Orchestration]) -> Result<(), Error> {
        let Some(behind) = self.nodes.iter().find(|n| n.relay.is_some()) else { return Ok(()) };
        let relay = behind.relay.as_ref().map(|r| r.name.as_str()).unwrap_or_default();
        if self.batching.is_some() {
            return Err(Error::input(format!(
                "node `{}` is behind relay `{relay}`, and a run through relays cannot go in batches yet",
                behind.name
            ))
            .hint("run it without --serial (or `serial:`), or --restrict the batches to the direct nodes"));
        }
        for (job, (doc, spec)) in self.jobs.iter().zip(job_specs(orchestrations)) {
            let traits = job.work.traits();
            if !traits.waits_for_others || traits.gathers {
                continue;
            }
            if let Some(node) = job.targets.iter().map(|&t| &self.nodes[t]).find(|n| n.relay.is_some()) {
                let relay = node.relay.as_ref().map(|r| r.name.as_str()).unwrap_or_default();
                return Err(doc
                    .error_at(&spec.path, format!("{} on {} waits for other nodes, and {} is behind relay `{relay}`: not supported yet", job.verb, node.name, node.name))
                    .hint("a relay runs its site on its own: run this job on direct nodes (`targets:` or --restrict), or in an orchestration of its own per site"));
            }
        }
        Ok(())
    }

    /// The part of the plan a relay runs: the nodes `indices` (in plan order), every job kept
    /// with its number, its targets narrowed to those nodes and renumbered.
    pub fn part(&self, indices: &[usize]) -> Plan {
        let mut renumber = vec![usize::MAX; self.nodes.len()];
        for (k, &i) in indices.iter().enumerate() {
            renumber[i] = k;
        }
        let mut jobs = self.jobs.clone();
        let mut query_targets = Vec::new();
        for job in &mut jobs {
            if job.work.traits().gathers && !job.targets.is_empty() {
                query_targets.push((job.id, job.targets.iter().map(|&t| self.nodes[t].name.clone()).collect()));
            }
            job.targets = job.targets.iter().map(|&t| renumber[t]).filter(|&t| t != usize::MAX).collect();
        }
        Plan {
            nodes: indices.iter().map(|&i| self.nodes[i].clone()).collect(),
            entries: self.entries.clone(),
            jobs,
            vars: indices.iter().map(|&i| self.vars[i].clone()).collect(),
            schedule: Schedule::Together,
            forced: self.forced.clone(),
            batching: None,
            relays: Vec::new(),
            query_targets,
        }
    }

    /// Jobs that wait for other nodes cannot run in batches: the nodes they wait for may be
    /// in a batch that starts only after theirs ends.
    fn check_batchable(&self, orchestrations: &[Orchestration]) -> Result<(), Error> {
        for (job, (doc, spec)) in self.jobs.iter().zip(job_specs(orchestrations)) {
            if job.work.traits().waits_for_others {
                return Err(doc
                    .error_at(&spec.path, format!("{} waits for other nodes, so it cannot run in batches", job.verb))
                    .hint("a node of a later batch has not run when an earlier batch waits for it: run this orchestration without --serial (or `serial:`), or move this job to an orchestration of its own"));
            }
        }
        Ok(())
    }

    /// A job that reboots its node cannot share it with async entries, whose jobs would be
    /// cut by the reboot.
    fn check_reboots(&self, orchestrations: &[Orchestration]) -> Result<(), Error> {
        for (job, (doc, spec)) in self.jobs.iter().zip(job_specs(orchestrations)) {
            if !job.work.traits().reboots {
                continue;
            }
            let beside = self.entries.iter().filter(|e| e.is_async).find_map(|e| {
                let node = e.jobs.iter().flat_map(|&j| &self.jobs[j].targets).find(|t| job.targets.contains(t))?;
                Some(self.nodes[*node].name.clone())
            });
            if let Some(node) = beside {
                return Err(doc
                    .error_at(&spec.path, format!("{} on {node} would cut short the async entries that run there beside it", job.verb))
                    .hint("a reboot waits for nothing else on its node: make those entries not async, or reboot in an orchestration of its own"));
            }
        }
        Ok(())
    }

    /// QUERY_WAIT and JOB_WAIT name nodes by catalog name; each must run something here.
    fn check_identities(&self, orchestrations: &[Orchestration]) -> Result<(), Error> {
        for (job, (doc, spec)) in self.jobs.iter().zip(job_specs(orchestrations)) {
            for id in job.work.identities() {
                if !self.nodes.iter().any(|n| n.name == *id) {
                    let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                    return Err(doc
                        .error_at(&spec.path, format!("{} waits for `{id}`, which runs nothing in this run", job.verb))
                        .hint(format!(
                            "--identity takes catalog node names that this run reaches: {}",
                            names.join(", ")
                        )));
                }
            }
        }
        Ok(())
    }

    /// The values known to be secret before the run: the catalog's secret vars of the plan's
    /// nodes and the literal values of `ARG --secret`/`ENV --secret` (templated ones are
    /// added as they are rendered on each node).
    pub fn secrets(&self) -> Vec<serde_json::Value> {
        let vars = self.nodes.iter().flat_map(|n| n.secret_vars.iter().filter_map(|k| n.vars.get(k)).cloned());
        let args = self.jobs.iter().filter_map(|j| j.work.secret().cloned());
        vars.chain(args).collect()
    }

    /// Hashes again, with `seal`, the fingerprints of entries written with a secret in them.
    pub(crate) fn seal(&mut self, seal: &fingerprint::Seal) {
        for entry in &mut self.entries {
            entry.fingerprint = seal.hash(&entry.written);
        }
    }

    /// How many (job, node) pairs the run holds.
    pub fn total_tasks(&self) -> usize {
        self.jobs.iter().map(|j| j.targets.len()).sum()
    }

    /// How many jobs each node has, in node order.
    pub fn jobs_per_node(&self) -> Vec<usize> {
        let mut per = vec![0usize; self.nodes.len()];
        for &t in self.jobs.iter().flat_map(|j| &j.targets) {
            per[t] += 1;
        }
        per
    }
}

impl Selection {
    /// Which catalog nodes the selection lets through.
    pub fn mask(&self, catalog: &Catalog) -> Result<Vec<bool>, Error> {
        let mut mask = select::select(catalog, &self.restrict, "--restrict")?;
        if !self.targets.is_empty() {
            let targets = select::select(catalog, &self.targets, "--target")?;
            mask.iter_mut().zip(&targets).for_each(|(m, t)| *m &= *t);
            if !mask.iter().any(|m| *m) {
                return Err(Error::input(format!(
                    "--target `{}` and --restrict `{}` select no node together",
                    self.targets.join(","),
                    self.restrict.join(",")
                ))
                .hint("--restrict narrows the nodes --target names; drop one, or name nodes both take"));
            }
        }
        if let Some(only) = &self.only {
            for (i, node) in catalog.nodes.iter().enumerate() {
                mask[i] &= only.contains(&node.name);
            }
        }
        Ok(mask)
    }
}

/// Catalog indices of the named targets: a node name first, then a host.
fn resolve(catalog: &Catalog, doc: &Document, targets: &[TargetRef]) -> Result<Vec<usize>, Error> {
    let mut out = Vec::new();
    for t in targets {
        let found = catalog.nodes.iter().position(|n| n.name == t.name).map(|i| vec![i]).unwrap_or_else(|| {
            catalog.nodes.iter().enumerate().filter(|(_, n)| n.host == t.name).map(|(i, _)| i).collect()
        });
        if found.is_empty() {
            let err = doc.error_at(&t.path, format!("unknown target `{}`", t.name));
            return Err(match crate::error::suggest(&t.name, catalog.nodes.iter().map(|n| n.name.as_str())) {
                Some(s) => err.hint(format!(
                    "did you mean `{s}`? targets are catalog node names or hosts; the catalog has {}",
                    catalog.names_hint()
                )),
                None => err
                    .hint(format!("targets are catalog node names or hosts; the catalog has {}", catalog.names_hint())),
            });
        }
        for i in found {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    Ok(out)
}

fn plan_job(doc: &Document, spec: &JobSpec, id: usize, entry_index: usize) -> Result<Job, Error> {
    let verb_path = child(&spec.path, doc_key(doc, &spec.path, &spec.verb));
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let file_dir = Some(cwd.join(&doc.dir));
    let roots = verb::SourceRoots { cwd, file_dir };
    let parsed = verb::parse(&spec.verb, &spec.args, &spec.vars, &roots).map_err(|e| {
        if e.help {
            return Error::help(e.message);
        }
        let at = match &e.var {
            Some(key) => child(&child(&spec.path, "vars"), Seg::KeyName(key.clone())),
            None => verb_path.clone(),
        };
        let err = doc.error_at(&at, e.message);
        match e.hint {
            Some(h) => err.hint(h),
            None => err,
        }
    })?;
    if let Err(e) = check_templates(&parsed.work) {
        return Err(doc.error_at(&verb_path, e).hint(crate::catalog::template::SYNTAX_HINT));
    }
    Ok(Job {
        name: spec.name.clone(),
        definition: value_at(doc, &spec.path).clone(),
        ..Job::parsed(&spec.verb, parsed, id, entry_index)
    })
}

/// Checks the syntax of every template of a job (the text it renders on each node), so that
/// a mistake is an input error before any node is contacted.
fn check_templates(work: &Work) -> Result<(), String> {
    use crate::catalog::template::check;
    for source in work.blueprints() {
        let text = crate::catalog::yaml::read_text(&source.path).map_err(|e| e.message)?;
        check(&text).map_err(|e| format!("{e} in blueprint {}", source.path.display()))?;
    }
    work.templates().into_iter().try_for_each(check)
}

/// The value at `path` in `doc` (null when there is none).
pub(crate) fn value_at<'a>(doc: &'a Document, path: &[Seg]) -> &'a serde_json::Value {
    let mut node = &doc.root;
    for seg in path {
        node = match seg {
            Seg::Index(i) => &node[*i],
            Seg::Key(k) | Seg::KeyName(k) => &node[k.as_str()],
        };
    }
    node
}

/// The key the verb was written with (it may be lower-case in the file).
fn doc_key(doc: &Document, path: &[Seg], verb: &str) -> String {
    value_at(doc, path)
        .as_object()
        .and_then(|m| m.keys().find(|k| k.eq_ignore_ascii_case(verb)).cloned())
        .unwrap_or_else(|| verb.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn catalog() -> Catalog {
        let text = "groups: {web: {}, db: {}}\nnodes:\n  - {name: web1, host: 10.0.0.1, groups: [web]}\n  - {name: web2, host: 10.0.0.2, groups: [web]}\n  - {name: db1, host: 10.0.0.3, groups: [db]}\n";
        Catalog::from_documents(vec![Document::parse(Path::new("c.yaml"), text.into()).unwrap()]).unwrap()
    }

    fn plan(text: &str, restrict: &[&str]) -> Result<Plan, Error> {
        let o = Orchestration::from_document(Document::parse(Path::new("o.yaml"), text.into()).unwrap())?;
        Plan::build(
            &catalog(),
            &[o],
            &Selection {
                restrict: restrict.iter().map(std::string::ToString::to_string).collect(),
                ..Selection::default()
            },
        )
    }

    #[test]
    fn exec_targets_narrowed_by_restrict_must_leave_a_node() {
        let c = crate::catalog::Catalog::from_documents(vec![Document::parse(
            std::path::Path::new("c.yaml"),
            "nodes:\n  - {name: tb1, groups: [web]}\n  - {name: db1, groups: [db]}\n".into(),
        )
        .unwrap()])
        .unwrap();
        let selection = Selection { targets: vec!["tb1".into()], restrict: vec!["db".into()], ..Selection::default() };
        assert_eq!(
            selection.mask(&c).unwrap_err().to_string(),
            "error: --target `tb1` and --restrict `db` select no node together\n  hint: --restrict narrows the nodes --target names; drop one, or name nodes both take"
        );
        let selection =
            Selection { targets: vec!["tb1,db1".into()], restrict: vec!["db".into()], ..Selection::default() };
        assert_eq!(selection.mask(&c).unwrap(), [false, true]);
    }

    #[test]
    fn targets_restrict_and_assign() {
        let p = plan("- targets: [web1, 10.0.0.3]\n  jobs:\n    - RUN: a\n    - RUN: b\n      assign: [web2]\n- jobs:\n    - RUN: --run-once c\n", &[]).unwrap();
        let names = |j: &Job| j.targets.iter().map(|&t| p.nodes[t].name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&p.jobs[0]), ["web1", "db1"]);
        assert_eq!(names(&p.jobs[1]), ["web2"]);
        assert_eq!(names(&p.jobs[2]), ["web1"]);
        let p = plan("- jobs: [{RUN: a}]\n", &["web*"]).unwrap();
        assert_eq!(p.nodes.len(), 2);
        let p = plan("- jobs: [{RUN: a}]\n", &["db"]).unwrap();
        assert_eq!(p.nodes[0].name, "db1");
    }

    #[test]
    fn lanes_put_async_entries_apart() {
        let p =
            plan("- jobs: [{RUN: a}, {RUN: b}]\n- async: true\n  jobs: [{RUN: c}]\n- jobs: [{RUN: d}]\n", &[]).unwrap();
        assert_eq!(p.lanes(0), vec![vec![vec![0, 1], vec![3]], vec![vec![2]]]);
    }

    #[test]
    fn error_texts() {
        let err = plan("- targets: [web9]\n  jobs: [{RUN: a}]\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "error: o.yaml:1:13: unknown target `web9`\n  hint: did you mean `web1`? targets are catalog node names or hosts; the catalog has web1, web2, db1");
        let err = plan("- jobs: [{RUN: a}]\n", &["mail*"]).unwrap_err();
        assert_eq!(err.to_string(), "error: --restrict `mail*` matches no node or group in the catalog\n  hint: the catalog has web1, web2, db1");
        let err = plan("- jobs:\n    - POD: --start web --stop web\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "error: o.yaml:2:12: POD needs exactly one of --start, --stop, --rm, --kill, --inspect, --play, --exec-run\n  hint: usage: POD (--start|--stop|--rm|--kill|--inspect NAME | --play FILE | --exec-run CONTAINER) [--socket-path PATH] [--env K=V,...] [--command CMD...] [--privileged] [--force] [--no-tlsverify] [--kill-signal SIG] [--systemd NAME] [--hook WHEN=CMD...]");
        let err = plan("- jobs:\n    - RUN: echo\n      vars: {stdout_ag: x}\n", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: o.yaml:3:14: unknown var `stdout_ag` for RUN\n  hint: did you mean `stdout_arg`?"
        );
        let err = plan("- jobs:\n    - QUERY_WAIT: k --identity web7\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "error: o.yaml:2:7: QUERY_WAIT waits for `web7`, which runs nothing in this run\n  hint: --identity takes catalog node names that this run reaches: web1, web2, db1");
        let err = plan("- jobs:\n    - RUN: echo {{ host\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "error: o.yaml:2:12: template error: unexpected end of input, expected end of variable block (line 1 of the template)\n  hint: templates are Jinja (`{{ name }}`, `{% if x %}...{% endif %}`); `{#` opens a comment, so write `{{ '{#' }}` for the text `{#`");
        let err = plan("- jobs:\n    - ARG: \"k {'a': '{% if x %}'}\"\n", &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("error: o.yaml:2:12: template error: unexpected end of input, expected end of block"),
            "{err}"
        );
        let help = plan("- jobs:\n    - ECHO: --exec-help\n", &[]).unwrap_err();
        assert_eq!(help.code, 0);
        assert!(help.to_string().starts_with("usage: ECHO WORDS...\n"));
        let err =
            plan("- jobs:\n    - REBOOT: 5\n- async: true\n  targets: [web2]\n  jobs: [{RUN: a}]\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "error: o.yaml:2:7: REBOOT on web2 would cut short the async entries that run there beside it\n  hint: a reboot waits for nothing else on its node: make those entries not async, or reboot in an orchestration of its own");
        let err = plan("- jobs:\n    - REBOOT: soon\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "error: o.yaml:2:15: REBOOT takes the seconds to wait before the reboot, not `soon`\n  hint: usage: REBOOT [--reboot-timeout SECS] [SECONDS]");
        let err = plan("- jobs:\n    - RUN: --timeout soon sleep 1\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "error: o.yaml:2:12: option `--timeout` needs a whole number, not `soon`");
    }

    /// Every orchestration of Directord's own corpus loads and plans, except those whose ADD
    /// sources the corpus does not ship.
    #[test]
    fn the_directord_corpus_plans() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/orchestrations");
        let mut names: Vec<String> = ["df.next-c0.localdomain", "df.next-c1.localdomain", "df.next-c2.localdomain"]
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        names.extend((1..=3).map(|i| format!("df.next-c{i}.localdomain-client-1")));
        let nodes: String = names.iter().map(|n| format!("  - {{name: {n}, host: {n}}}\n")).collect();
        let catalog =
            Catalog::from_documents(vec![Document::parse(Path::new("c.yaml"), format!("nodes:\n{nodes}")).unwrap()])
                .unwrap();
        let mut files: Vec<_> =
            std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        files.sort();
        let mut refused = Vec::new();
        for file in &files {
            let o = Orchestration::load(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            match Plan::build(&catalog, &[o], &Selection::default()) {
                Ok(plan) => assert!(!plan.jobs.is_empty(), "{}", file.display()),
                Err(e) => {
                    let text = e.to_string();
                    let what = text.split('`').nth(1).unwrap_or_default().to_string();
                    let name = file.file_name().unwrap().to_string_lossy().into_owned();
                    // ADD of a file the corpus does not ship (upstream's, or the author's own).
                    assert!(text.contains(&format!("source `{what}` matches no file")), "{name}: {text}");
                    refused.push(format!("{name} (no {what})"));
                }
            }
        }
        assert_eq!(files.len(), 25);
        assert_eq!(
            refused,
            [
                "directord-key-rotation.yaml (no /etc/directord/private_keys/client.key_secret)",
                "example.yaml (no /home/centos/.ssh/*)",
                "ghost-blog.yaml (no files/nginx-ghost.j2)",
                "rabbitmq.yaml (no files/rabbitmq/systemd-limits.conf.j2)",
                "sonarr-radarr-nzbget.yml (no files/generic-systemd.service.j2)",
                "ssh-keygen-distribute.yaml (no files/authorized_keys.j2)",
            ]
        );
    }
}
