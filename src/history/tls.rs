//! How a PostgreSQL history's connection is encrypted and whom it trusts: libpq's `sslmode`,
//! read from the URL as `psql` reads it.
//!
//! - `disable`: plain TCP (or the Unix socket);
//! - `prefer` (libpq's default, and so ours) and `require`: TLS when the server offers it
//!   (`require`: or no connection), the server's certificate not checked — libpq's meaning:
//!   encrypted, not authenticated;
//! - `verify-ca`: TLS, the certificate chain checked against `sslrootcert` (default
//!   `~/.postgresql/root.crt`), whatever name it is for;
//! - `verify-full`: that, and the certificate must be for the host the URL names.
//!
//! TLS is rustls (with ring, as russh's crypto). `sslrootcert=system` (the system's roots) is
//! not served.

use super::store::StoreError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A history URL read: the driver's configuration, and the TLS it connects with (`None`:
/// none).
pub(crate) struct Connect {
    pub config: postgres::Config,
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// Reads `url` (libpq's URL or key=value form) with its `sslmode` and `sslrootcert`.
pub(crate) fn connect_config(url: &str) -> Result<Connect, StoreError> {
    let (rest, mode, rootcert) = take_ssl_options(url)?;
    let mut config: postgres::Config = rest.parse().map_err(|e: postgres::Error| StoreError(e.to_string()))?;
    config.ssl_mode(match mode {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => postgres::config::SslMode::Require,
    });
    let chain = match mode {
        SslMode::Disable => return Ok(Connect { config, tls: None }),
        SslMode::Prefer | SslMode::Require => None,
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let path = rootcert.unwrap_or_else(|| crate::paths::expand_home("~/.postgresql/root.crt"));
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| StoreError(format!("cannot read the root certificates {}: {e}", path.display())))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| StoreError(format!("a root certificate in {} is not usable: {e}", path.display())))?;
            }
            let checked = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider()))
                .build()
                .map_err(|e| StoreError(format!("no root certificate in {}: {e}", path.display())))?;
            Some(checked)
        }
    };
    let verifier = Verifier {
        chain,
        any_name: mode != SslMode::VerifyFull,
        algorithms: provider().signature_verification_algorithms,
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Connect { config, tls: Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls)) })
}

/// ring, the crypto russh already brings (rustls deprecates it only for lacking post-quantum
/// key exchange; aws-lc-rs would add a C library to the build for one database connection).
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Takes `sslmode` and `sslrootcert` out of the URL's query (the driver knows neither
/// `verify-ca`/`verify-full` nor root certificates).
fn take_ssl_options(url: &str) -> Result<(String, SslMode, Option<PathBuf>), StoreError> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let (mut mode, mut rootcert, mut kept) = (SslMode::Prefer, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => {
                mode = match value {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(StoreError(format!(
                            "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        )))
                    }
                }
            }
            Some(("sslrootcert", "system")) => {
                return Err(StoreError("sslrootcert=system is not served: name a file of PEM root certificates".into()))
            }
            Some(("sslrootcert", value)) => rootcert = Some(crate::paths::expand_home(&percent_decoded(value))),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, mode, rootcert))
}

/// `%2F` and the like, as a URL's query writes a path.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the server's certificate must be, by `sslmode`: for `prefer`/`require` anything (no
/// `chain`: libpq does not check one in these modes); for `verify-ca` a chain to a root, for any
/// name; for `verify-full` a chain and the URL's host. In every mode the handshake's signatures
/// are checked, so the server holds the key of the certificate it shows.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    any_name: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.any_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_read_as_libpq_reads_them() {
        let (rest, mode, root) =
            take_ssl_options("postgres://u@db/x?application_name=d&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem")
                .unwrap();
        assert_eq!(
            (rest.as_str(), mode, root),
            ("postgres://u@db/x?application_name=d", SslMode::VerifyFull, Some(PathBuf::from("/etc/ca.pem")))
        );
        assert_eq!(take_ssl_options("postgres://u@db/x").unwrap().1, SslMode::Prefer, "libpq's default");
        assert_eq!(take_ssl_options("postgres://u@db/x?sslmode=disable").unwrap().1, SslMode::Disable);
        assert!(take_ssl_options("postgres://db?sslmode=strict")
            .unwrap_err()
            .0
            .contains("sslmode `strict` is not one of"));
        assert!(connect_config("postgres://db?sslmode=verify-ca&sslrootcert=/nonexistent.pem")
            .err()
            .unwrap()
            .0
            .starts_with("cannot read the root certificates /nonexistent.pem: "));
    }
}
