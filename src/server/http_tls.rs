//! Optional TLS on the admin listener (issue 11 item 3): `[server]
//! http_tls_cert` and `http_tls_key`, PEM files. rustls (ring provider),
//! TLS 1.2 and 1.3. Without them the admin API is plain HTTP, as before.
//!
//! Start-up fails with a message naming the file when a path is wrong, a
//! file holds no certificate or key, or the key does not match.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The acceptor for `cert` (a chain, leaf first) and `key`.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).with_context(|| format!("cannot read TLS {what} {}", path.display()))
    };
    let cert_pem = read(cert, "certificate (http_tls_cert)")?;
    let key_pem = read(key, "private key (http_tls_key)")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("bad PEM in TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        bail!("no certificate in TLS certificate file {}", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow::anyhow!("no usable private key in {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .with_context(|| {
            format!(
                "TLS certificate {} and key {} do not go together",
                cert.display(),
                key.display()
            )
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The acceptor `[server]` asks for, if any; one of the two keys alone is
/// an error.
pub fn from_config(server: &crate::config::ServerConfig) -> anyhow::Result<Option<TlsAcceptor>> {
    match (&server.http_tls_cert, &server.http_tls_key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => acceptor(cert, key).map(Some),
        _ => bail!("http_tls_cert and http_tls_key must be set together"),
    }
}
