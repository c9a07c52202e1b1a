//! The floor the benchmarks measure against: bare russh, in-process, no executor.

#![allow(dead_code)] // each bench uses the floors it needs

use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use std::sync::Arc;

pub(crate) struct AnyKey;

impl client::Handler for AnyKey {
    type Error = russh::Error;
    // The floor measures the protocol's cost only; the fleet is ours and freshly keyed.
    async fn check_server_key(&mut self, _: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Public-key auth on a fresh session, one exec channel running `true`, then disconnect.
pub(crate) async fn auth_and_run_true(
    mut handle: client::Handle<AnyKey>,
    user: String,
    key: Arc<russh::keys::PrivateKey>,
) {
    let auth = handle.authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, None)).await.expect("auth");
    assert!(auth.success());
    let mut channel = handle.channel_open_session().await.expect("channel");
    channel.exec(true, "true").await.expect("exec");
    let mut status = None;
    while let Some(msg) = channel.wait().await {
        if let ChannelMsg::ExitStatus { exit_status } = msg {
            status = Some(exit_status);
        }
    }
    assert_eq!(status, Some(0));
    let _ = handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
}

/// Public-key auth on a fresh session, one exec channel running `sh -s` with `script` on its
/// stdin, then disconnect: the least any SSH tool can do to have a node run that script.
pub(crate) async fn auth_and_run_script(
    mut handle: client::Handle<AnyKey>,
    user: String,
    key: Arc<russh::keys::PrivateKey>,
    script: Arc<Vec<u8>>,
) {
    let auth = handle.authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, None)).await.expect("auth");
    assert!(auth.success());
    let mut channel = handle.channel_open_session().await.expect("channel");
    channel.exec(true, "sh -s").await.expect("exec");
    channel.data(&script[..]).await.expect("script");
    channel.eof().await.expect("eof");
    let mut status = None;
    let mut stderr = Vec::new();
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::ExtendedData { data, .. } => stderr.extend_from_slice(&data),
            _ => {}
        }
    }
    assert_eq!(status, Some(0), "the script floor's script failed: {}", String::from_utf8_lossy(&stderr));
    let _ = handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
}
