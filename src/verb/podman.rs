//! What CONTAINER_IMAGE and POD share: the `podman` command line on the node.

use crate::shell::quote;

/// The podman command, talking to `socket` when one is given.
pub(crate) fn podman(socket: Option<&str>) -> String {
    match socket {
        Some(path) => format!("podman --url {}", quote(&format!("unix://{path}"))),
        None => "podman".to_string(),
    }
}

/// The flag of `--no-tlsverify` (`verify` false) for the commands that reach a registry.
pub(crate) fn tls(verify: bool) -> &'static str {
    if verify {
        ""
    } else {
        " --tls-verify=false"
    }
}
