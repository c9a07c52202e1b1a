//! Templates: Directord's `{{ }}` rendering with a node's cached args, through minijinja.
//!
//! Jinja semantics as Directord had them: strict undefined (a missing variable fails the job,
//! it never renders as ""), trailing newlines kept, no autoescape, the stock filters, and
//! Python's methods on values (`query.values()`, `.items()`, `.upper()`...) through
//! minijinja-contrib's pycompat. Booleans and None print the Python way (`True`, `None`) as Jinja2 did; lists and mappings
//! print with double quotes (`["a"]`, `{"k": 1}`), which YAML and JSON readers both accept.
//!
//! A template is a program a node's data feeds, so its work is bounded: fuel caps the steps
//! (a loop that never ends fails the job in about a second) and the output is capped at
//! [`MAX_OUTPUT`]. Rendering blocks: the engine calls it off the async threads, and does not
//! wait for it past the job's timeout or a cancel: it sets the context's [`Stop`], which
//! ends every `range` loop and every write of the rendering at its next step, and the rendering
//! ends soon after (one step of a template can still be long: its result is then thrown away).

use minijinja::{Environment, UndefinedBehavior, Value as Tv};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// What templates render with: the variables (shared with the node caches that hold them, not
/// copied), and the same as the template engine's values, converted once for all the templates
/// of a job ([`Renderer::context`]).
pub(crate) struct Context {
    vars: BTreeMap<String, Arc<Value>>,
    tv: Tv,
    stop: Stop,
}

impl Context {
    /// A variable's value.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.vars.get(name).map(|v| &**v)
    }

    /// The context, whose renderings `stop` ends.
    pub(crate) fn stopped_by(self, stop: &Stop) -> Self {
        Context { stop: stop.clone(), ..self }
    }
}

/// Tells a rendering on another thread to stop: the job it renders for timed out or was
/// cancelled. Its loops over `range` end and its writes fail at their next step. The default
/// is a rendering nothing stops (no allocation: most jobs render nothing heavy).
#[derive(Clone, Default)]
pub(crate) struct Stop(Option<Arc<AtomicBool>>);

impl Stop {
    /// A stop that [`Stop::stop`] can set.
    pub(crate) fn armed() -> Self {
        Stop(Some(Arc::default()))
    }

    pub(crate) fn stop(&self) {
        if let Some(flag) = &self.0 {
            flag.store(true, Ordering::Relaxed);
        }
    }

    fn stopped(&self) -> bool {
        self.0.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed))
    }
}

thread_local! {
    /// The [`Stop`] of the rendering on this thread (`range` has no other way to learn it).
    static RENDERING: RefCell<Option<Stop>> = const { RefCell::new(None) };
}

/// Whether the rendering on this thread was told to stop.
fn stopped_here() -> bool {
    RENDERING.with(|r| r.borrow().as_ref().is_some_and(Stop::stopped))
}

/// Jinja's `range` (the same values and limits), whose loops end once the rendering is told
/// to stop.
fn range(lower: isize, upper: Option<isize>, step: Option<isize>) -> Result<Tv, minijinja::Error> {
    let values = minijinja::functions::range(lower, upper, step)?;
    Ok(Tv::make_iterable(move || values.try_iter().into_iter().flatten().take_while(|_| !stopped_here())))
}

/// Steps a template may take (minijinja's fuel): a loop over tens of thousands of items fits
/// many times over; a runaway nested loop stops within about a second.
pub(crate) const FUEL: u64 = 20_000_000;
/// The largest text a template may render to.
pub(crate) const MAX_OUTPUT: usize = 16 * 1024 * 1024;

pub(crate) struct Renderer {
    env: Environment<'static>,
    /// The variables each template text reads, by text (a job's templates are parsed once to
    /// learn what its context needs, and again to render).
    uses: Mutex<HashMap<String, Arc<[String]>>>,
    /// Large values already converted to the template engine's, by the shared value's address
    /// (with the value, to know it is still that one): a QUERY's map of every node is converted
    /// once for the fleet, not once per node.
    converted: Mutex<HashMap<usize, (Weak<Value>, Tv)>>,
}

/// Texts whose variables [`Renderer::uses`] remembers (the plan's templates and blueprints).
const USES_KEPT: usize = 4096;
/// Mappings and lists with at least this many items are large ([`is_large`]).
const LARGE_FROM: usize = 32;

/// Whether `value` is a mapping or list large enough to keep once when several nodes hold it:
/// node caches share it ([`crate::node::cache::shared`]) and templates convert it once
/// ([`Renderer::context`]).
pub(crate) fn is_large(value: &Value) -> bool {
    let items = match value {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    items >= LARGE_FROM
}

impl Default for Renderer {
    fn default() -> Self {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("range", range);
        Renderer { env, uses: Mutex::default(), converted: Mutex::default() }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Renderer {
    /// Renders `template` with `args` (a mapping of variables); the error names the variable
    /// that is missing.
    #[cfg(test)]
    pub(crate) fn render(&self, template: &str, args: &Value) -> Result<String, String> {
        let vars = args.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), Arc::new(v.clone())));
        self.render_noting(template, &self.context(vars.collect()), None)
    }

    /// The context of `vars`: each large value shared by several nodes is converted to the
    /// template engine's once, while any node's context holds it.
    pub(crate) fn context(&self, vars: BTreeMap<String, Arc<Value>>) -> Context {
        let tv = vars.iter().map(|(name, value)| (name.as_str(), self.convert(value))).collect();
        Context { tv, vars, stop: Stop::default() }
    }

    fn convert(&self, value: &Arc<Value>) -> Tv {
        if !is_large(value) {
            return Tv::from_serialize(&**value);
        }
        let address = Arc::as_ptr(value) as usize;
        if let Some((held, tv)) = lock(&self.converted).get(&address) {
            if held.upgrade().is_some_and(|h| Arc::ptr_eq(&h, value)) {
                return tv.clone();
            }
        }
        let tv = Tv::from_serialize(&**value);
        let mut converted = lock(&self.converted);
        converted.retain(|_, (held, _)| held.strong_count() > 0);
        converted.insert(address, (Arc::downgrade(value), tv.clone()));
        tv
    }

    /// [`Renderer::render`], adding to `used` the top-level variables the template reads
    /// (from the one parse it renders with).
    pub(crate) fn render_noting(
        &self,
        template: &str,
        context: &Context,
        used: Option<&mut std::collections::BTreeSet<String>>,
    ) -> Result<String, String> {
        if !is_template(template) {
            return Ok(template.to_string());
        }
        let ctx = context.tv.clone();
        let tmpl = self.env.template_from_str(template).map_err(|e| format!("template error: {}", describe(&e)))?;
        if let Some(used) = used {
            used.extend(tmpl.undeclared_variables(false));
        }
        let mut out = Capped(Vec::new(), context.stop.clone());
        let previous = RENDERING.with(|r| r.replace(Some(context.stop.clone())));
        let rendered = tmpl.render_captured_to(ctx, &mut out);
        RENDERING.with(|r| *r.borrow_mut() = previous);
        match rendered {
            // What it rendered is thrown away: the job has already ended.
            _ if context.stop.stopped() => Err("template error: stopped".to_string()),
            Ok(_) => String::from_utf8(out.0).map_err(|_| "template error: the output is not UTF-8".to_string()),
            Err(e) if e.kind() == minijinja::ErrorKind::WriteFailure => Err(format!(
                "template error: the template renders to more than {} MiB",
                MAX_OUTPUT >> 20
            )),
            Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(format!(
                "template error: the template did not finish within {FUEL} steps (a loop that never ends?)"
            )),
            Err(e) if e.kind() == minijinja::ErrorKind::UndefinedError => Err(match self.missing(template, context) {
                Some(name) => format!("undefined variable `{name}`: the node's cache has no such arg (set it with ARG, --stdout-arg, CACHEFILE or QUERY)"),
                None => format!("template error: {}", describe(&e)),
            }),
            Err(e) => Err(format!("template error: {}", describe(&e))),
        }
    }

    /// Checks a template's syntax without rendering it: the error says what is wrong and on
    /// which line of the template.
    pub(crate) fn check(&self, template: &str) -> Result<(), String> {
        if !is_template(template) {
            return Ok(());
        }
        self.env.template_from_str(template).map(|_| ()).map_err(|e| format!("template error: {}", describe(&e)))
    }

    /// The top-level variables the template reads, sorted (none for plain text, or a template
    /// that does not parse: rendering it says why).
    pub(crate) fn uses(&self, template: &str) -> Arc<[String]> {
        if !is_template(template) {
            return Arc::new([]);
        }
        if let Some(names) = lock(&self.uses).get(template) {
            return names.clone();
        }
        let names: Arc<[String]> = match self.env.template_from_str(template) {
            Ok(t) => t.undeclared_variables(false).into_iter().collect::<BTreeSet<_>>().into_iter().collect(),
            Err(_) => Arc::new([]),
        };
        let mut uses = lock(&self.uses);
        if uses.len() >= USES_KEPT {
            uses.clear();
        }
        uses.insert(template.to_string(), names.clone());
        names
    }

    /// The top-level variables any of `templates` reads.
    pub(crate) fn uses_all(&self, templates: &[&str]) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for template in templates {
            names.extend(self.uses(template).iter().cloned());
        }
        names
    }

    /// The first variable path the template uses that `context` does not have.
    fn missing(&self, template: &str, context: &Context) -> Option<String> {
        let tmpl = self.env.template_from_str(template).ok()?;
        let mut paths: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
        paths.sort();
        for path in paths {
            let mut segs = path.split('.');
            let first = segs.next()?;
            let Some(mut node) = context.get(first) else { return Some(first.to_string()) };
            let mut walked = vec![first];
            for seg in segs {
                walked.push(seg);
                match node.get(seg) {
                    Some(next) => node = next,
                    // A method call such as `query.values` is not data: only report a miss on
                    // a mapping whose key is absent, or a top-level name.
                    None if node.is_object() && !is_method(seg) => return Some(walked.join(".")),
                    None => break,
                }
            }
        }
        None
    }
}

/// Whether `text` holds template syntax at all (`{{`, `{%` or `{#`); plain text renders as
/// itself.
pub(crate) fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Checks a template's syntax, as files are loaded and planned: a mistake is found before
/// any node is contacted, not on each node.
pub(crate) fn check(template: &str) -> Result<(), String> {
    static CHECKER: std::sync::LazyLock<Renderer> = std::sync::LazyLock::new(Renderer::default);
    CHECKER.check(template)
}

/// The hint for a template syntax error.
pub(crate) const SYNTAX_HINT: &str =
    "templates are Jinja (`{{ name }}`, `{% if x %}...{% endif %}`); `{#` opens a comment, so write `{{ '{#' }}` for the text `{#`";

/// An output that refuses to grow past [`MAX_OUTPUT`], or at all once its rendering is told
/// to stop.
struct Capped(Vec<u8>, Stop);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT || self.1.stopped() {
            return Err(std::io::Error::other("output too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn is_method(name: &str) -> bool {
    [
        "values",
        "items",
        "keys",
        "get",
        "upper",
        "lower",
        "split",
        "strip",
        "startswith",
        "endswith",
        "replace",
        "format",
        "join",
        "count",
    ]
    .contains(&name)
}

fn describe(e: &minijinja::Error) -> String {
    let mut text = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
    if let Some(line) = e.line() {
        text.push_str(&format!(" (line {line} of the template)"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_directord() {
        let r = Renderer::default();
        let args = json!({"query": {"n1": {"k": "v1"}, "n2": {}}, "lst": ["test"], "b": true, "i": 9000});
        assert_eq!(
            r.render("{{ query.values() | map(attribute='k') | select('defined') | list | first }}", &args).unwrap(),
            "v1"
        );
        assert_eq!(r.render("x={{ lst }} {{ b }} {{ i }}\n", &args).unwrap(), "x=[\"test\"] True 9000\n");
        assert_eq!(r.render("no template here $x", &args).unwrap(), "no template here $x");
        // As in Directord, `{#` opens a Jinja comment, even inside shell like ${#arr[@]}.
        assert!(r.render("echo ${#x}", &args).is_err());
    }

    #[test]
    fn undefined_names_the_variable() {
        let r = Renderer::default();
        let args = json!({"query": {"n1": {}}});
        assert_eq!(r.render("echo {{ wrkdir }}", &args).unwrap_err(), "undefined variable `wrkdir`: the node's cache has no such arg (set it with ARG, --stdout-arg, CACHEFILE or QUERY)");
        assert_eq!(r.render("echo {{ query.n1.k }}", &args).unwrap_err(), "undefined variable `query.n1.k`: the node's cache has no such arg (set it with ARG, --stdout-arg, CACHEFILE or QUERY)");
        assert_eq!(
            r.render("echo {{ x", &args).unwrap_err(),
            "template error: unexpected end of input, expected end of variable block (line 1 of the template)"
        );
        assert_eq!(
            r.check("echo {{ x"),
            Err("template error: unexpected end of input, expected end of variable block (line 1 of the template)"
                .to_string())
        );
        assert_eq!(r.check("echo {{ x }} ${HOME}"), Ok(()));
    }

    #[test]
    fn uses_names_top_level_variables() {
        let r = Renderer::default();
        let text = "{{ a.b }} {% for x in items %}{{ x }}{{ c }}{% endfor %} $HOME";
        let used = r.uses(text);
        assert_eq!(*used, ["a", "c", "items"]);
        assert!(Arc::ptr_eq(&r.uses(text), &used), "a text is parsed once");
        assert!(r.uses("echo plain").is_empty());
        let mut noted = std::collections::BTreeSet::new();
        let args = serde_json::json!({"a": {"b": 1}, "c": 2, "items": [1]});
        r.render_noting(
            "{{ a.b }} {% for x in items %}{{ x }}{{ c }}{% endfor %}",
            &r.context(args.as_object().unwrap().iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect()),
            Some(&mut noted),
        )
        .unwrap();
        assert_eq!(noted.into_iter().collect::<Vec<_>>(), *used);
        assert!(r.uses("echo {{ broken").is_empty());
    }

    /// A rendering told to stop ends its `range` loops and its writes at their next step: the
    /// nested loop below would otherwise run out of fuel (20,000,000 steps), and the output
    /// would be written.
    #[test]
    fn a_stopped_rendering_ends_its_loops_and_writes() {
        let r = Renderer::default();
        let stop = Stop::armed();
        let context = r.context(BTreeMap::new()).stopped_by(&stop);
        let looping = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        assert!(r.render_noting(looping, &context, None).unwrap_err().contains("20000000 steps"));
        assert_eq!(
            r.render_noting("{{ range(3)|list }} {{ range(10, 0, -3)|join(',') }}", &context, None).unwrap(),
            "[0, 1, 2] 10,7,4,1"
        );
        stop.stop();
        assert_eq!(r.render_noting(looping, &context, None).unwrap_err(), "template error: stopped");
        assert_eq!(r.render_noting("{{ 'x' }}", &context, None).unwrap_err(), "template error: stopped");
        // Renderings on this thread after it are not stopped by it.
        assert_eq!(r.render_noting("{{ range(2)|list }}", &r.context(BTreeMap::new()), None).unwrap(), "[0, 1]");
        assert_eq!(
            r.render_noting("{{ range(100001) }}", &r.context(BTreeMap::new()), None).unwrap_err(),
            "template error: range has too many elements (line 1 of the template)"
        );
    }

    /// A large value several nodes' contexts share is converted once, and renders the same.
    #[test]
    fn shared_values_are_converted_once() {
        let r = Renderer::default();
        let map: serde_json::Map<String, Value> =
            (0..40).map(|i| (format!("n{i}"), serde_json::json!({"k": i}))).collect();
        let query = Arc::new(Value::Object(map));
        let context = |v: &Arc<Value>| r.context([("query".to_string(), v.clone())].into());
        let (a, b) = (context(&query), context(&query));
        assert_eq!(lock(&r.converted).len(), 1);
        let text = "{{ query | length }} {{ query.n39.k }}";
        assert_eq!(r.render_noting(text, &a, None).unwrap(), "40 39");
        assert_eq!(r.render_noting(text, &b, None).unwrap(), "40 39");
        // An equal value that is another allocation is converted for itself; once the shared
        // one is gone, its conversion goes with the next one remembered.
        let other = Arc::new((*query).clone());
        let c = context(&other);
        assert_eq!(r.render_noting(text, &c, None).unwrap(), "40 39");
        assert_eq!(lock(&r.converted).len(), 2);
        drop((a, b, query));
        let third = Arc::new(Value::Array(vec![Value::Null; 50]));
        context(&third);
        assert_eq!(lock(&r.converted).len(), 2);
        // Small values are converted each time, not remembered.
        context(&Arc::new(serde_json::json!({"a": 1})));
        assert_eq!(lock(&r.converted).len(), 2);
    }

    #[test]
    fn work_and_output_are_bounded() {
        let r = Renderer::default();
        let args = json!({});
        let runaway = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        assert_eq!(
            r.render(runaway, &args).unwrap_err(),
            "template error: the template did not finish within 20000000 steps (a loop that never ends?)"
        );
        let huge = "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}";
        assert_eq!(r.render(huge, &args).unwrap_err(), "template error: the template renders to more than 16 MiB");
    }
}
