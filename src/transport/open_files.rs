//! The open-file limit a run needs: one connection per node at once, and more for each local
//! node's pipes. A login's soft limit is often 1,024 while its hard limit allows far more, so
//! a run whose nodes need more than the soft limit raises it to the hard limit (at most 1 Mi)
//! before it contacts a node; a selection the hard limit cannot serve is refused before
//! anything is contacted.

use crate::error::Error;

/// Open files a run needs besides its nodes' (history, known_hosts, logs, the runtime).
const BASE: u64 = 64;

/// Open files per node: its SSH connection (a local node: the executor's three pipes).
const PER_NODE: u64 = 3;

/// Raises the soft limit to the hard one when `nodes` need more than it allows; refuses a
/// selection the hard limit cannot serve.
pub(crate) fn ensure(nodes: usize) -> Result<(), Error> {
    let need = BASE + PER_NODE * nodes as u64;
    // SAFETY: getrlimit writes into a local struct.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= need {
        return Ok(());
    }
    if limit.rlim_max < need {
        return Err(Error::input(format!(
            "the run has {nodes} nodes and may need {need} open files at once, but this process may open at most {} (its hard limit)",
            limit.rlim_max
        ))
        .hint("raise the hard limit (`ulimit -Hn` as root, or nofile in /etc/security/limits.conf), or select fewer nodes with --restrict"));
    }
    // As far as the hard limit allows (within reason): a node's jobs may open files too.
    limit.rlim_cur = limit.rlim_max.min(1 << 20).max(need);
    // SAFETY: setrlimit reads a local struct; raising the soft limit up to the hard one is
    // always allowed.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    Ok(())
}
