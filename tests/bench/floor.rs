//! The floor the benchmarks measure against: bare russh, in-process, no executor.

use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use std::sync::Arc;

pub struct AnyKey;

impl client::Handler for AnyKey {
    type Error = russh::Error;
    // The floor measures the protocol's cost only; the fleet is ours and freshly keyed.
    async fn check_server_key(&mut self, _: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Public-key auth on a fresh session, one exec channel running `true`, then disconnect.
pub async fn auth_and_run_true(mut handle: client::Handle<AnyKey>, user: String, key: Arc<russh::keys::PrivateKey>) {
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
