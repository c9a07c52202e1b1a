//! `director manage`: the run history as tables (or JSON with `--json`), and cancel.
//!
//! A frontend of the history: it asks [`crate::history`] for rows and prints them. Tables are
//! aligned columns under an upper-case header and a rule, followed by `Total Items: N`, like
//! Directord's; `--job-info` and `--run-info` are `KEY  VALUE` tables where a mapping prints
//! as `node = value` lines and a list one item a line. An empty history says so and exits 0.

use crate::cli::{JobFilter, ManageArgs};
use crate::error::{exit, Error};
use crate::event::RunMode;
use crate::history::query::{not_found, Found, JobFilter as Filter, JobInfo, RunInfo};
use crate::history::{CancelState, History, Location, ResultStatus, RunStatus};
use std::io::Write;
use std::time::{Duration, Instant};

/// How long `--cancel` waits for the run to record itself cancelled.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn run(args: &ManageArgs, path: &Location) -> Result<i32, Error> {
    let mut out = std::io::stdout().lock();
    let text = render(args, path)?;
    // Recorded output is shown, not obeyed; JSON and YAML escape it themselves.
    let text = if args.json || args.export_jobs.is_some() { text.into() } else { super::printable(&text) };
    // A closed stdout is the reader's business, not an error.
    let _ = out.write_all(text.as_bytes());
    Ok(exit::OK)
}

fn empty(path: &Location, what: &str) -> String {
    format!("No {what} recorded yet (history: {path}).\n")
}

fn json(value: &impl serde::Serialize) -> String {
    format!("{}\n", serde_json::to_string_pretty(value).unwrap_or_default())
}

/// The text `manage` prints for `args`.
pub(crate) fn render(args: &ManageArgs, path: &Location) -> Result<String, Error> {
    if args.limit.is_some() && !(args.list_runs || args.list_jobs || args.list_nodes) {
        return Err(Error::input("--limit goes with --list-runs, --list-jobs or --list-nodes")
            .hint("e.g. `director manage --list-runs --limit 10` shows the ten newest runs"));
    }
    let Some(mut store) = History::open_existing(path)? else {
        if let Some(given) = &args.cancel {
            return Err(not_found("run", given, path));
        }
        let what = if args.list_nodes || args.purge_nodes {
            "nodes"
        } else if args.list_runs || args.run_info.is_some() {
            "runs"
        } else {
            "jobs"
        };
        return Ok(if args.json { json(&serde_json::json!([])) } else { empty(path, what) });
    };
    // Runs whose process died are abandoned, whatever we are asked.
    store.sweep_abandoned()?;
    if args.list_runs {
        let header = [
            "ID",
            "KIND",
            "STATUS",
            "STARTED",
            "DURATION",
            "NODES",
            "OK",
            "FAILED",
            "UNREACHABLE",
            "SKIPPED",
            "COMMAND",
        ];
        return Ok(listing(&newest(store.list_runs()?, args.limit), args.json, path, "runs", &header, |r| {
            vec![
                r.id.clone(),
                kind(r),
                r.status.to_string(),
                r.started.to_string(),
                r.duration_ms.map(seconds).unwrap_or_default(),
                r.nodes.to_string(),
                r.nodes_ok.to_string(),
                r.nodes_failed.to_string(),
                r.nodes_unreachable.to_string(),
                r.nodes_skipped.to_string(),
                r.command.clone(),
            ]
        }));
    }
    if let Some(given) = &args.run_info {
        let Found::One(id) = store.find("runs", "run", given)? else { return Ok(empty(path, "runs")) };
        let info = store.run_info(&id)?;
        return Ok(if args.json { json(&info) } else { run_table(&info) });
    }
    if args.list_jobs {
        let filter = args.filter.map(|f| match f {
            JobFilter::Success => Filter::Success,
            JobFilter::Failed => Filter::Failed,
            JobFilter::Processing => Filter::Processing,
        });
        let header =
            ["ID", "RUN", "PARENT_JOB_NAME", "JOB_NAME", "VERB", "EXECUTION_TIME", "PROCESSING", "SUCCESS", "FAILED"];
        return Ok(listing(&newest(store.list_jobs(filter)?, args.limit), args.json, path, "jobs", &header, |j| {
            vec![
                j.id.clone(),
                j.run.clone(),
                j.parent_name.clone(),
                j.name.clone(),
                j.verb.clone(),
                j.execution_time.map(|t| format!("{t:.3}")).unwrap_or_default(),
                if j.processing { "True" } else { "False" }.to_string(),
                j.success.to_string(),
                j.failed.to_string(),
            ]
        }));
    }
    if let Some(given) = &args.job_info {
        let Found::One(id) = store.find("jobs", "job", given)? else { return Ok(empty(path, "jobs")) };
        let info = store.job_info(&id)?;
        return Ok(if args.json { json(&info) } else { job_table(&info) });
    }
    if let Some(file) = &args.export_jobs {
        let jobs = store.all_jobs()?;
        let mut map = serde_json::Map::new();
        for job in &jobs {
            map.insert(job.id.clone(), serde_json::to_value(job).unwrap_or_default());
        }
        let text = crate::catalog::yaml::to_yaml(&serde_json::Value::Object(map));
        // `-` is standard output, as for every tool that writes a file.
        if file.as_os_str() == "-" {
            return Ok(text);
        }
        crate::private::write_file(file, text.as_bytes()).map_err(|e| {
            Error::internal(format!("cannot write {}: {}", file.display(), crate::error::io_reason(&e)))
                .hint("check that the directory exists and is writable")
        })?;
        return Ok(if args.json {
            json(&serde_json::json!({"exported": jobs.len(), "file": file}))
        } else {
            format!("Exported {} jobs to {}\n", jobs.len(), file.display())
        });
    }
    if args.list_nodes {
        let header = ["NAME", "ADDRESS", "ARCH", "OS", "KERNEL", "HOSTNAME", "EXECUTOR", "LAST_SEEN", "LAST_RUN"];
        return Ok(listing(&newest(store.list_nodes()?, args.limit), args.json, path, "nodes", &header, |n| {
            vec![
                n.name.clone(),
                n.address.clone(),
                n.arch.clone(),
                n.os.clone(),
                n.kernel.clone(),
                n.hostname.clone(),
                n.executor_sha3.chars().take(12).collect(),
                n.last_seen.map(|w| w.to_string()).unwrap_or_default(),
                n.last_run.clone().unwrap_or_default(),
            ]
        }));
    }
    if args.purge_jobs {
        let (jobs, runs) = store.purge_jobs()?;
        return Ok(if args.json {
            json(&serde_json::json!({"jobs": jobs, "runs": runs}))
        } else {
            format!("Purged {jobs} jobs of {runs} finished runs\n")
        });
    }
    if args.purge_nodes {
        let nodes = store.purge_nodes()?;
        return Ok(if args.json {
            json(&serde_json::json!({"nodes": nodes}))
        } else {
            format!("Purged {nodes} nodes\n")
        });
    }
    if let Some(given) = &args.cancel {
        let id = match store.find("runs", "run", given)? {
            Found::One(id) => id,
            Found::Empty => return Err(not_found("run", given, path)),
        };
        let said = match store.request_cancel(&id)? {
            CancelState::Unknown => return Err(not_found("run", given, path)),
            CancelState::NotRunning(status) => format!("Run {id} is not running: it is {status}.\n"),
            CancelState::OwnerGone => format!("Run {id} had no live process any more; it is now recorded cancelled.\n"),
            CancelState::Requested => {
                let asked = Instant::now();
                loop {
                    match store.status(&id)? {
                        Some(RunStatus::Running) => {}
                        Some(status) => break format!("Run {id} is {status}.\n"),
                        None => break format!("Run {id} is no longer in the history.\n"),
                    }
                    if asked.elapsed() > CANCEL_WAIT {
                        break format!("Asked run {id} to cancel; it is still stopping.\n");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        return Ok(if args.json { json(&serde_json::json!({"run": id, "status": store.status(&id)?})) } else { said });
    }
    Err(Error::input("manage needs one action").hint("see `director manage --help`"))
}

/// A list: JSON, the empty-history sentence, or a table of `cells` of each row.
fn listing<T: serde::Serialize>(
    rows: &[T],
    as_json: bool,
    path: &Location,
    what: &str,
    header: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) -> String {
    if as_json {
        return json(&rows);
    }
    if rows.is_empty() {
        return empty(path, what);
    }
    tabulate(header, &rows.iter().map(cells).collect::<Vec<_>>())
}

/// The first `limit` rows (the lists come newest first).
fn newest<T>(mut rows: Vec<T>, limit: Option<usize>) -> Vec<T> {
    if let Some(n) = limit {
        rows.truncate(n);
    }
    rows
}

/// A run's kind as the tables show it: `orchestrate`, or `orchestrate (plan)` for a --plan.
fn kind(r: &crate::history::query::RunRow) -> String {
    match r.mode {
        RunMode::Plan => format!("{} (plan)", r.kind),
        RunMode::Run => r.kind.to_string(),
    }
}

fn seconds(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Aligned columns: the header, a rule of dashes, the rows, then `Total Items: N`.
pub(crate) fn tabulate(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let last = cells.len() - 1;
        let mut s = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(&cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(std::string::ToString::to_string).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out.push_str(&format!("\nTotal Items: {}\n", rows.len()));
    out
}

/// A `KEY  VALUE` table; a value of several lines continues under the VALUE column.
fn key_value(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(3).max(3);
    let mut out = format!("{:<width$}  VALUE\n{}  -----\n", "KEY", "-".repeat(width));
    for (key, value) in rows {
        let mut lines = value.lines();
        out.push_str(format!("{key:<width$}  {}", lines.next().unwrap_or("")).trim_end());
        out.push('\n');
        for more in lines {
            out.push_str(format!("{:<width$}  {more}", "").trim_end());
            out.push('\n');
        }
    }
    out
}

fn per_node(info: &JobInfo, value: impl Fn(&crate::history::query::ResultRow) -> Option<String>) -> String {
    info.results.iter().filter_map(|r| value(r).map(|v| format!("{} = {}", r.node, v))).collect::<Vec<_>>().join("\n")
}

fn mean(values: impl Iterator<Item = Option<i64>>) -> String {
    let v: Vec<i64> = values.flatten().collect();
    if v.is_empty() {
        return String::new();
    }
    format!("{:.8}", v.iter().sum::<i64>() as f64 / v.len() as f64 / 1000.0)
}

fn job_table(info: &JobInfo) -> String {
    let output =
        |text: &str, cut: i64| if text.is_empty() && cut == 0 { None } else { Some(text.trim_end().to_string()) };
    let fingerprints: Vec<&str> = {
        let mut f: Vec<&str> = info.results.iter().filter_map(|r| r.fingerprint.as_deref()).collect();
        f.dedup();
        f
    };
    let sha = if fingerprints.len() <= 1 {
        fingerprints.first().map(std::string::ToString::to_string).unwrap_or_default()
    } else {
        per_node(info, |r| r.fingerprint.clone())
    };
    let nodes_with = |which: fn(ResultStatus) -> bool| {
        info.results.iter().filter(|r| which(r.status)).map(|r| r.node.clone()).collect::<Vec<_>>().join("\n")
    };
    let processing = info.results.iter().any(|r| r.status == ResultStatus::Running)
        || info.results.len() < info.targets.len() && info.results.iter().all(|r| r.status != ResultStatus::Abandoned);
    let definition = match &info.definition {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k} = {}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect::<Vec<_>>()
            .join("\n"),
        v => v.to_string(),
    };
    key_value(&[
        // The id found, not what was given (`last`, a prefix).
        ("ID", info.id.clone()),
        ("JOB_ID", info.id.clone()),
        ("RUN_ID", info.run.clone()),
        ("JOB_DEFINITION", definition),
        ("JOB_SHA3_224", sha),
        ("JOB_NAME", info.name.clone()),
        ("PARENT_JOB_ID", info.parent_id.clone()),
        ("PARENT_JOB_NAME", info.parent_name.clone().unwrap_or_else(|| info.parent_sha3.clone())),
        ("VERB", info.verb.clone()),
        (
            "COMPONENT_TIMESTAMP",
            info.results.iter().filter_map(|r| r.started).max().map(|w| w.to_string()).unwrap_or_default(),
        ),
        ("INFO", per_node(info, |r| r.info.clone().filter(|s| !s.is_empty()))),
        ("STATUS", per_node(info, |r| Some(r.status.to_string()))),
        ("REASON", per_node(info, |r| r.reason.clone())),
        ("EXIT_CODE", per_node(info, |r| r.exit_code.map(|c| c.to_string()))),
        ("PROCESSING", if processing { "True" } else { "False" }.to_string()),
        (
            "RETURN_TIMESTAMP",
            info.results.iter().filter_map(|r| r.finished).max().map(|w| w.to_string()).unwrap_or_default(),
        ),
        ("STDERR", per_node(info, |r| output(&r.stderr, r.stderr_cut))),
        ("STDOUT", per_node(info, |r| output(&r.stdout, r.stdout_cut))),
        ("ROUNDTRIP_TIME", mean(info.results.iter().map(|r| r.roundtrip_ms))),
        ("EXECUTION_TIME", mean(info.results.iter().map(|r| r.execution_ms))),
        ("SUCCESS", nodes_with(ResultStatus::succeeded)),
        ("FAILED", nodes_with(ResultStatus::went_wrong)),
    ])
}

fn run_table(info: &RunInfo) -> String {
    let r = &info.run;
    let summary = info
        .summary
        .as_ref()
        .and_then(|s| s.as_object())
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with("jobs_"))
                .map(|(k, v)| format!("{} = {v}", &k[5..]))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    key_value(&[
        ("ID", r.id.clone()),
        ("RUN_ID", r.id.clone()),
        ("KIND", kind(r)),
        ("COMMAND", r.command.clone()),
        ("FILES", info.files.join("\n")),
        (
            "CATALOGS",
            if info.catalogs.is_empty() { "(embedded local catalog)".to_string() } else { info.catalogs.join("\n") },
        ),
        ("STATUS", r.status.to_string()),
        ("EXIT_CODE", r.exit_code.map(|c| c.to_string()).unwrap_or_default()),
        ("STARTED", r.started.to_string()),
        ("ENDED", r.ended.map(|w| w.to_string()).unwrap_or_default()),
        ("DURATION", r.duration_ms.map(seconds).unwrap_or_default()),
        ("OWNER", format!("pid {} on {}", r.pid, r.host)),
        ("JOBS", info.jobs.to_string()),
        ("RESULTS", summary),
        (
            "NODES",
            info.node_outcomes
                .iter()
                .map(|n| {
                    let batch = n.batch.map(|b| format!(", batch {b}")).unwrap_or_default();
                    match &n.error {
                        Some(e) => format!("{} = {}{batch} ({})", n.node, n.outcome, e),
                        None => format!("{} = {}{batch}", n.node, n.outcome),
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_count() {
        let t = tabulate(&["ID", "NAME"], &[vec!["a1".into(), "web".into()], vec!["b".into(), "database".into()]]);
        assert_eq!(t, "ID  NAME\n--  --------\na1  web\nb   database\n\nTotal Items: 2\n");
        let kv = key_value(&[("ID", "x".into()), ("STDOUT", "n1 = a\nn2 = b".into()), ("EMPTY", String::new())]);
        assert_eq!(kv, "KEY     VALUE\n------  -----\nID      x\nSTDOUT  n1 = a\n        n2 = b\nEMPTY\n");
    }
}
