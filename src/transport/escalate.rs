//! Become: the executor started as another user, through sudo, su or doas.
//!
//! The probe and the install (see [`super::executor`]) are shell scripts; for an
//! [`Account::Become`] they run under the become method, as that user, in that user's home:
//! the executor, its cache directory and the node cache are that user's, so every verb (ADD
//! ownership included) works as it. The wrapped script first prints [`READY_MARKER`] on
//! stdout. What the method says before that line is its own dialogue: a password prompt,
//! answered once with the run's become password written to the method's standard input (never
//! a command line, so never in `ps`), or a refusal, which becomes the node's error with the
//! method's own words. Without a password, sudo runs with `-n` (never prompts) and doas always
//! does (it reads passwords from a terminal only).

use super::{Incoming, Link};
use crate::catalog::{Account, BecomeMethod};
use crate::secret::Password;
use crate::shell::quote as sh_quote;
use tokio::io::AsyncWriteExt;

/// The line the wrapped script prints once it runs as the become user.
pub(crate) const READY_MARKER: &str = "director-become-ok";
/// sudo's prompt (`-p`), so that a prompt is told from anything else sudo says.
const SUDO_PROMPT: &str = "[director-become-password]";
/// The shell's exit status for a command it cannot find.
const NOT_FOUND: u32 = 127;

/// `script` as the account runs it: unchanged for the login user; otherwise under the
/// become method, announcing [`READY_MARKER`] first. `password`: whether one will be given.
pub(crate) fn wrap(script: &str, account: &Account, password: bool) -> String {
    let Account::Become { user, method } = account else { return script.to_string() };
    // su keeps the caller's environment: the become user's cache is under its own home.
    let inner = format!(r#"echo {READY_MARKER}; unset XDG_CACHE_HOME; cd "$HOME" 2>/dev/null || cd /; {script}"#);
    let (user, inner) = (sh_quote(user), sh_quote(&inner));
    match method {
        BecomeMethod::Sudo if password => {
            format!("sudo -H -S -p {} -u {user} -- /bin/sh -c {inner}", sh_quote(SUDO_PROMPT))
        }
        BecomeMethod::Sudo => format!("sudo -H -n -u {user} -- /bin/sh -c {inner}"),
        BecomeMethod::Su => format!("su -s /bin/sh -c {inner} {user}"),
        BecomeMethod::Doas => format!("doas -n -u {user} /bin/sh -c {inner}"),
    }
}

/// Follows the become method on `link` (a wrapped script just started) until the script
/// runs as the account: answers its password prompt once, or returns its refusal as the
/// node's error. The bytes after the marker stay in `link.pending`.
pub(crate) async fn dialogue(link: &mut Link, account: &Account, password: Option<&Password>) -> Result<(), String> {
    let Account::Become { user, method } = account else { return Ok(()) };
    let mut stderr = Vec::new();
    let mut answered = false;
    loop {
        let ready = format!("{READY_MARKER}\n");
        if let Some(at) = find(&link.pending, ready.as_bytes()) {
            link.pending.drain(..at + ready.len());
            return Ok(());
        }
        match link.incoming.recv().await {
            Incoming::Data(d) => link.pending.extend_from_slice(&d),
            Incoming::Stderr(e) => {
                stderr.extend_from_slice(&e);
                if !prompted(*method, &stderr, answered) {
                    continue;
                }
                let Some(password) = password.filter(|_| !answered) else {
                    return Err(refusal(user, *method, &stderr, None, answered));
                };
                let line = zeroize::Zeroizing::new(format!("{}\n", password.reveal()));
                link.writer
                    .write_all(line.as_bytes())
                    .await
                    .map_err(|e| format!("cannot become {user} through {}: {e}", method.name()))?;
                link.writer.flush().await.map_err(|e| e.to_string())?;
                answered = true;
            }
            Incoming::Closed(status) => return Err(refusal(user, *method, &stderr, status, answered)),
        }
    }
}

/// Whether `stderr` ends in a password prompt not answered yet: sudo's own prompt (`-p`)
/// once more than answered, or for su, text with no line break after it ("Password: ").
fn prompted(method: BecomeMethod, stderr: &[u8], answered: bool) -> bool {
    let text = String::from_utf8_lossy(stderr);
    match method {
        BecomeMethod::Sudo => text.matches(SUDO_PROMPT).count() > usize::from(answered),
        BecomeMethod::Su => !text.ends_with('\n') && !text.trim().is_empty(),
        BecomeMethod::Doas => false,
    }
}

/// The node's error when the method did not let the script run, in its own words.
fn refusal(user: &str, method: BecomeMethod, stderr: &[u8], status: Option<u32>, answered: bool) -> String {
    let text = String::from_utf8_lossy(stderr).replace(SUDO_PROMPT, "");
    let said: String = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    let said: String = said.chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
    let name = method.name();
    let head = format!("cannot become {user} through {name}");
    if status == Some(NOT_FOUND) {
        return format!("{head}: {name} is not installed on the node ({said})");
    }
    if answered {
        return format!("{head}: the become password was refused ({said})");
    }
    let ask = "give it with --ask-become-pass or --become-password-file";
    match method {
        BecomeMethod::Sudo if said.contains("password is required") => {
            format!("{head}: {said} ({ask}, or allow the login user sudo without a password: NOPASSWD)")
        }
        BecomeMethod::Su if status.is_none() => format!("{head}: su asks for a password ({ask})"),
        BecomeMethod::Doas if said.contains("Authentication required") || said.contains("tty") => format!(
            "{head}: {said} (doas reads passwords from a terminal only: allow the login user with `permit nopass` in doas.conf)"
        ),
        _ if said.is_empty() => format!(
            "{head}: it ended (exit {}) before running anything",
            status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into())
        ),
        _ => format!("{head}: {said}"),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(method: BecomeMethod) -> Account {
        Account::Become { user: "root".into(), method }
    }

    #[test]
    fn wrapped_commands() {
        assert_eq!(wrap("echo hi", &Account::Login, true), "echo hi");
        let inner = r#"'echo director-become-ok; unset XDG_CACHE_HOME; cd "$HOME" 2>/dev/null || cd /; echo hi'"#;
        assert_eq!(
            wrap("echo hi", &root(BecomeMethod::Sudo), false),
            format!("sudo -H -n -u 'root' -- /bin/sh -c {inner}")
        );
        assert_eq!(
            wrap("echo hi", &root(BecomeMethod::Sudo), true),
            format!("sudo -H -S -p '[director-become-password]' -u 'root' -- /bin/sh -c {inner}")
        );
        assert_eq!(wrap("echo hi", &root(BecomeMethod::Su), true), format!("su -s /bin/sh -c {inner} 'root'"));
        assert_eq!(wrap("echo hi", &root(BecomeMethod::Doas), false), format!("doas -n -u 'root' /bin/sh -c {inner}"));
    }

    #[test]
    fn refusals_name_the_method_and_what_it_said() {
        let sudo = BecomeMethod::Sudo;
        assert_eq!(
            refusal("root", sudo, b"sudo: a password is required\n", Some(1), false),
            "cannot become root through sudo: sudo: a password is required (give it with --ask-become-pass or --become-password-file, or allow the login user sudo without a password: NOPASSWD)"
        );
        assert_eq!(
            refusal(
                "root",
                sudo,
                b"[director-become-password]Sorry, try again.\n[director-become-password]",
                None,
                true
            ),
            "cannot become root through sudo: the become password was refused (Sorry, try again.)"
        );
        assert_eq!(
            refusal("root", sudo, b"sh: 1: sudo: not found\n", Some(127), false),
            "cannot become root through sudo: sudo is not installed on the node (sh: 1: sudo: not found)"
        );
        assert_eq!(
            refusal("pg", sudo, b"deploy is not in the sudoers file.\n", Some(1), false),
            "cannot become pg through sudo: deploy is not in the sudoers file."
        );
        assert_eq!(
            refusal("root", BecomeMethod::Su, b"Password: ", None, false),
            "cannot become root through su: su asks for a password (give it with --ask-become-pass or --become-password-file)"
        );
        assert!(prompted(BecomeMethod::Su, b"Password: ", false));
        assert!(!prompted(BecomeMethod::Sudo, b"[director-become-password]", true));
        assert!(prompted(BecomeMethod::Sudo, b"[director-become-password]Sorry.\n[director-become-password]", true));
    }
}
