//! Directord's job language: every verb, each in one module of its own.
//!
//! A verb module owns everything about its verb: its syntax (options and the `--exec-help`
//! text, through [`Syntax`]), how a job of it is spelled, what it renders on a node, what goes
//! into its fingerprint, how it runs there (through what the engine lends it: [`Cx`]), and how
//! a cache hit is checked on the node before it is trusted (through [`Verb`]). Plan and engine
//! dispatch on one type, [`Work`]; the one list of verbs is the `verbs!` table below, so
//! adding a verb is a module, a line there, its tests, and the README's verb table.
//!
//! Options are read the Directord way ([`options`]): a known option token is taken out of the
//! argument string wherever it stands, `--opt=v` and `--opt v` both work, and `vars` override
//! them.

pub(crate) mod files;
pub(crate) mod options;
pub(crate) mod podman;
pub(crate) mod source;

use crate::node::cache::JobRecord;
use director_proto::Attrs;
use options::Given;
pub(crate) use options::{Arity, VerbError, DEFAULT_TIMEOUT, MAX_NUMBER};
use serde_json::{Map, Value};
pub(crate) use source::SourceRoots;
use std::future::Future;

pub(crate) use crate::node::{Cancel, Cx, Finish, JobRef};

/// How a job of a verb is written in an orchestration: its usage and options, and how its
/// argument string becomes the verb's work.
pub(crate) trait Syntax: Sized {
    /// The usage `--exec-help` prints: a synopsis line, then what it does and its options.
    const USAGE: &'static str;
    /// The verb's own options (the common ones are [`options::COMMON`]).
    const OPTIONS: &'static [(&'static str, Arity)];
    /// Unknown `--options` are part of the arguments (a shell command, words to echo).
    const FREE_TEXT: bool = false;

    /// The usage of the verb spelled `name` (verbs with two names may say it apart).
    fn usage(_name: &str) -> &'static str {
        Self::USAGE
    }

    /// The work of a job from its options and the rest of its arguments.
    fn parse(given: &Given) -> Result<Self, VerbError>;
}

/// What a verb's job is and does. Only [`Verb::spelled`] and [`Verb::perform`] have no
/// default: a verb that renders nothing, fingerprints only the common fields, and whose cache
/// hits are trusted writes just those.
pub(crate) trait Verb {
    /// Its arguments on one line as a person wrote them, for the job's label.
    fn spelled(&self) -> String;

    /// The texts that are templates, rendered on each node (a blueprint's content is one too,
    /// from [`Verb::blueprints`]).
    fn templates(&self) -> Vec<&str> {
        Vec::new()
    }

    /// Local files whose content is a template (ADD/COPY `--blueprint`).
    fn blueprints(&self) -> Vec<&source::Source> {
        Vec::new()
    }

    /// Renders the templates on the node into `r` (text, value, files to send).
    fn render(&self, _r: &mut Render<'_>) -> Result<(), String> {
        Ok(())
    }

    /// Its own fields of the fingerprint (see [`crate::plan::fingerprint`]).
    fn fingerprint(&self, _r: &Rendered, _fields: &mut Map<String, Value>) {}

    /// What the job does on this node as a person reads it; `None` shows its label.
    fn info(&self, _r: &Rendered) -> Option<String> {
        None
    }

    /// Does the work on the node.
    fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> impl Future<Output = Finish> + Send;

    /// A shell command that exits 0 when what the job would do already holds on the node,
    /// and otherwise prints why not, run in the job's own frame before its work
    /// ([`Cx::checked_command`]); `recorded`: the node has a record of this exact job. A
    /// verb with a check gets a record's cache hit checked this way, in no extra round trip,
    /// instead of by [`Verb::verify`]. A job whose check passes without a record is `cached`
    /// too: it has nothing to do (a package already installed).
    fn check(&self, _r: &Rendered, _recorded: bool) -> Option<String> {
        None
    }

    /// Whether a cache hit still holds on the node: why not, if it does not. The default
    /// trusts it (RUN: `--skip-cache` is the escape).
    fn verify(&self, _cx: &Cx<'_>, _record: &JobRecord, _r: &Rendered) -> impl Future<Output = Option<String>> + Send {
        async { None }
    }

    /// The paths [`Verb::verify`] will stat for `record`: the engine asks for them ahead, in
    /// one write with the other jobs' of the entry (see [`Cx::look_ahead`]).
    fn probes(&self, _record: &JobRecord, _r: &Rendered) -> Vec<String> {
        Vec::new()
    }

    /// The mode, owner and group of the files it writes.
    fn attrs(&self) -> Attrs {
        Attrs::default()
    }

    /// The catalog nodes it waits for by name (`--identity`).
    fn identities(&self) -> &[String] {
        &[]
    }

    /// The value it stores is secret.
    fn secret(&self) -> Option<&Value> {
        None
    }

    /// What kind of job it is, as plan and engine treat it ([`Traits`]).
    fn traits(&self) -> Traits {
        Traits::DEFAULT
    }
}

/// What kind of job a verb's job is, as plan and engine treat it: data, one value per verb
/// (a few verbs decide some of it from their options, RUN `--no-block` is never cached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traits {
    /// A success is recorded in the node cache and not repeated while nothing changed.
    pub cacheable: bool,
    /// It only changes the node cache (ARG, CACHEFILE, …): a plan does it in memory, and it
    /// reports `cached` when it leaves the cache as it was.
    pub cache_only: bool,
    /// Its output went to the events as the command printed it (else what it says it did is
    /// its output).
    pub streams_output: bool,
    /// Preparing it is CPU work worth a blocking thread beyond rendering its templates.
    pub heavy: bool,
    /// It waits for other nodes (so it cannot run in batches).
    pub waits_for_others: bool,
    /// It asks every target, even with `--run-once` (Directord's QUERY).
    pub gathers: bool,
    /// It reboots the node (its link drops and is made again while it runs).
    pub reboots: bool,
    /// Its record is checked by stats of paths on the node ([`Verb::probes`]).
    pub probes: bool,
}

impl Traits {
    /// A job that runs on its node, is cached when it succeeds, and says what it did.
    pub const DEFAULT: Traits = Traits {
        cacheable: true,
        cache_only: false,
        streams_output: false,
        heavy: false,
        waits_for_others: false,
        gathers: false,
        reboots: false,
        probes: false,
    };
    /// A job that only changes the node cache (ARG, CACHEFILE, FACTER, …).
    pub const CACHE_ONLY: Traits = Traits { cacheable: false, cache_only: true, ..Traits::DEFAULT };
    /// A command whose output streams to the events as it prints it.
    pub const STREAMS: Traits = Traits { streams_output: true, ..Traits::DEFAULT };
    /// A job that always runs.
    pub const UNCACHED: Traits = Traits { cacheable: false, ..Traits::DEFAULT };
}

/// One job to do on a node, as its verb gets it.
pub struct Task<'a> {
    pub job: JobRef,
    pub rendered: &'a Rendered,
    /// The files it writes, rendered and hashed.
    pub outgoing: Vec<Outgoing>,
    pub cancel: Cancel,
    /// The node has a record of this exact job: a verb with a [`Verb::check`] checks it.
    pub recorded: bool,
}

/// A file a job is about to write on the node.
pub struct Outgoing {
    pub dest: String,
    pub size: u64,
    pub sha3: String,
    pub body: Body,
}

pub enum Body {
    File(std::path::PathBuf),
    Rendered(Vec<u8>),
}

/// What a job became on one node: its templates rendered, its files hashed.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// RUN command, WORKDIR path, WAIT url or command.
    pub text: String,
    /// ARG/ENV value.
    pub value: Value,
    /// ADD/COPY: (final destination path, sha3-224 of the content) per file.
    pub files: Vec<(String, String)>,
    /// The node's cached envs, for the verbs that run a command.
    pub env: Map<String, Value>,
    /// The user the job runs as through become; `None` for the login user.
    pub run_as: Option<String>,
    /// The variables the job's templates use, each with [`crate::plan::fingerprint::short`] of its value (empty when
    /// the node has no such value): not in the fingerprint (the rendered text is), but in its
    /// [`crate::plan::fingerprint::Fingerprint::parts`], so a plan can say which one changed.
    pub uses: std::collections::BTreeMap<String, String>,
}

/// What a verb renders into on one node.
pub struct Render<'a> {
    render: &'a dyn Fn(&str) -> Result<String, String>,
    /// What the node said of itself (`facts`).
    facts: &'a Value,
    /// The texts of [`Verb::blueprints`], in order.
    pub blueprints: Vec<String>,
    pub rendered: Rendered,
    pub outgoing: Vec<Outgoing>,
}

impl<'a> Render<'a> {
    pub fn new(
        render: &'a dyn Fn(&str) -> Result<String, String>,
        facts: &'a Value,
        blueprints: Vec<String>,
        rendered: Rendered,
    ) -> Self {
        Render { render, facts, blueprints, rendered, outgoing: Vec::new() }
    }

    /// What the node said of itself when its executor started (`facts.NAME`).
    pub fn fact(&self, name: &str) -> Option<&str> {
        self.facts.get(name)?.as_str().filter(|s| !s.is_empty())
    }

    /// One template, rendered with the node's args.
    pub fn text(&self, template: &str) -> Result<String, String> {
        (self.render)(template)
    }

    /// A value whose strings are templates, rendered as Directord did: each string rendered,
    /// the structure kept.
    pub fn value(&self, value: &Value) -> Result<Value, String> {
        match value {
            Value::String(s) => Ok(Value::String(self.text(s)?)),
            Value::Array(items) => items.iter().map(|v| self.value(v)).collect::<Result<_, _>>().map(Value::Array),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| Ok((k.clone(), self.value(v)?)))
                .collect::<Result<_, String>>()
                .map(Value::Object),
            other => Ok(other.clone()),
        }
    }

    /// A file to send: recorded among the rendered files (for the fingerprint) and queued.
    pub fn send(&mut self, file: Outgoing) {
        self.rendered.files.push((file.dest.clone(), file.sha3.clone()));
        self.outgoing.push(file);
    }
}

/// The table of verbs: `module::Type => ["NAME", …]` for the verbs of orchestrations (the
/// type implements [`Syntax`] and [`Verb`]), then `module::Type` for bootstrap's own (only
/// [`Verb`]: bootstrap builds them). It declares the modules, the [`Work`] enum and its
/// dispatch, and [`VERBS`].
macro_rules! verbs {
    (
        orchestration { $($module:ident :: $ty:ident => [$($name:literal),+],)* }
        bootstrap { $($bmodule:ident :: $bty:ident,)* }
    ) => {
        $(pub(crate) mod $module;)*
        $(pub(crate) mod $bmodule;)*

        /// What a job does on a node: one verb's work.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub enum Work {
            $($ty($module::$ty),)*
            $($bty($bmodule::$bty),)*
        }

        /// Every verb an orchestration can use, by name.
        pub(crate) const VERBS: &[Spec] = &[
            $($(Spec {
                name: $name,
                usage: <$module::$ty as Syntax>::usage,
                options: <$module::$ty as Syntax>::OPTIONS,
                free_text: <$module::$ty as Syntax>::FREE_TEXT,
                parse: |given| <$module::$ty as Syntax>::parse(given).map(Work::$ty),
            },)+)*
        ];

        macro_rules! each {
            ($self:expr, $v:ident => $body:expr) => {
                match $self {
                    $(Work::$ty($v) => $body,)*
                    $(Work::$bty($v) => $body,)*
                }
            };
        }

        impl Work {
            pub fn spelled(&self) -> String { each!(self, v => v.spelled()) }
            pub fn templates(&self) -> Vec<&str> { each!(self, v => v.templates()) }
            pub fn blueprints(&self) -> Vec<&source::Source> { each!(self, v => v.blueprints()) }
            pub fn render(&self, r: &mut Render<'_>) -> Result<(), String> { each!(self, v => v.render(r)) }
            pub fn fingerprint(&self, r: &Rendered, fields: &mut Map<String, Value>) {
                each!(self, v => v.fingerprint(r, fields))
            }
            pub fn info(&self, r: &Rendered) -> Option<String> { each!(self, v => v.info(r)) }
            pub async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
                each!(self, v => v.perform(cx, task).await)
            }
            pub fn check(&self, r: &Rendered, recorded: bool) -> Option<String> { each!(self, v => v.check(r, recorded)) }
            pub async fn verify(&self, cx: &Cx<'_>, record: &JobRecord, r: &Rendered) -> Option<String> {
                each!(self, v => v.verify(cx, record, r).await)
            }
            pub fn probes(&self, record: &JobRecord, r: &Rendered) -> Vec<String> { each!(self, v => v.probes(record, r)) }
            pub fn attrs(&self) -> Attrs { each!(self, v => v.attrs()) }
            pub fn identities(&self) -> &[String] { each!(self, v => v.identities()) }
            pub fn secret(&self) -> Option<&Value> { each!(self, v => v.secret()) }
            pub fn traits(&self) -> Traits { each!(self, v => v.traits()) }
        }
    };
}

impl Work {
    /// The operator's files the work sends (ADD/COPY sources, a POD's play file): what a
    /// relay is sent.
    pub fn sources(&self) -> Vec<&source::Source> {
        match self {
            Work::Copy(c) => c.sources.iter().collect(),
            Work::Pod(pod::Pod { action: pod::Action::Play(file, _), .. }) => vec![file],
            _ => Vec::new(),
        }
    }

    /// [`Work::sources`], to point them at the copies a relay was sent.
    pub fn sources_mut(&mut self) -> Vec<&mut source::Source> {
        match self {
            Work::Copy(c) => c.sources.iter_mut().collect(),
            Work::Pod(pod::Pod { action: pod::Action::Play(file, _), .. }) => vec![file],
            _ => Vec::new(),
        }
    }

    /// Whether the work reads or writes files on the operator while it runs (bootstrap's
    /// SEND and FETCH), which a relay cannot do for it.
    pub fn touches_operator(&self) -> bool {
        matches!(self, Work::Send(_) | Work::Fetch(_))
    }
}

verbs! {
    orchestration {
    run::Run => ["RUN"],
    arg::Arg => ["ARG", "ENV"],
    copy::Copy => ["ADD", "COPY"],
    workdir::Workdir => ["WORKDIR"],
    cachefile::CacheFile => ["CACHEFILE"],
    cacheevict::CacheEvict => ["CACHEEVICT"],
    query::Query => ["QUERY"],
    query_wait::QueryWait => ["QUERY_WAIT"],
    job_wait::JobWait => ["JOB_WAIT"],
    wait::Wait => ["WAIT"],
    echo::Echo => ["ECHO"],
    queuesentinel::QueueSentinel => ["QUEUESENTINEL"],
    service::Service => ["SERVICE"],
    package::Package => ["DNF", "APT", "PKG"],
    reboot::Reboot => ["REBOOT"],
    facter::Facter => ["FACTER"],
    secontext::SeContext => ["SECONTEXT"],
    container_config_data::ContainerConfigData => ["CONTAINER_CONFIG_DATA"],
    container_image::ContainerImage => ["CONTAINER_IMAGE"],
    pod::Pod => ["POD"],
    }
    bootstrap {
    send::Send,
    fetch::Fetch,
    }
}

/// One verb of [`VERBS`].
pub(crate) struct Spec {
    pub name: &'static str,
    usage: fn(&str) -> &'static str,
    options: &'static [(&'static str, Arity)],
    free_text: bool,
    parse: fn(&Given) -> Result<Work, VerbError>,
}

impl Spec {
    /// The usage `--exec-help` prints, with the options every verb takes.
    pub(crate) fn usage(&self) -> String {
        format!("usage: {}\n\n{}", (self.usage)(self.name), options::COMMON_USAGE)
    }
}

pub(crate) fn spec(verb: &str) -> Option<&'static Spec> {
    VERBS.iter().find(|v| v.name == verb)
}

/// Whether director knows the verb (every verb of Directord, and APT and PKG).
pub(crate) fn known(verb: &str) -> bool {
    spec(verb).is_some()
}

/// Every verb's name, for did-you-mean and hints.
pub(crate) fn known_names() -> impl Iterator<Item = &'static str> {
    VERBS.iter().map(|v| v.name)
}

/// A parsed job: its work and the options every verb has.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    pub work: Work,
    pub timeout: std::time::Duration,
    pub run_once: bool,
    pub skip_cache: bool,
    pub stdout_arg: Option<String>,
    pub stderr_arg: Option<String>,
}

/// Parses one job of `verb` from its argument string and `vars`.
pub(crate) fn parse(
    verb: &str,
    args: &str,
    vars: &Map<String, Value>,
    roots: &SourceRoots,
) -> Result<Parsed, VerbError> {
    let spec = spec(verb).ok_or_else(|| options::err(format!("unknown verb `{verb}`")))?;
    let given = Given::read(spec, args, vars, roots)?;
    let work = (spec.parse)(&given)?;
    given.common(work)
}

#[cfg(test)]
mod tests;
