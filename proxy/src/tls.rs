//! The TLS certificate: loaded from PEM files and reloaded when they change, so a renewed
//! certificate (certbot, a Kubernetes secret) is served without a restart. A file that fails to
//! load is reported and the certificate in use stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ProxyError;

/// How often the files are checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The certificate served, swapped when its files change.
#[derive(Debug)]
pub struct Certificate {
    current: ArcSwap<CertifiedKey>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl Certificate {
    /// Loads the certificate chain and key; fails with the reason when they do not load.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, ProxyError> {
        let key = load(cert_path, key_path)?;
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(key),
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
        }))
    }

    /// A TLS acceptor serving this certificate (HTTP/1.1).
    pub fn acceptor(self: &Arc<Self>) -> Result<tokio_rustls::TlsAcceptor, ProxyError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxyError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// Checks the files every [`RELOAD_CHECK`] and swaps in a changed certificate that loads.
    pub fn watch(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut seen = self.stamps().await;
            loop {
                tokio::time::sleep(RELOAD_CHECK).await;
                let now = self.stamps().await;
                if now == seen {
                    continue;
                }
                seen = now;
                let (cert, key) = (self.cert_path.clone(), self.key_path.clone());
                match tokio::task::spawn_blocking(move || load(&cert, &key)).await {
                    Ok(Ok(key)) => {
                        self.current.store(Arc::new(key));
                        tracing::info!(cert = %self.cert_path.display(), "tls certificate reloaded");
                    }
                    Ok(Err(e)) => {
                        tracing::error!("tls certificate not reloaded, keeping the current one: {e}")
                    }
                    Err(e) => tracing::error!("tls certificate not reloaded: {e}"),
                }
            }
        });
    }

    async fn stamps(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let stamp = |p: PathBuf| async move { tokio::fs::metadata(p).await.and_then(|m| m.modified()).ok() };
        (stamp(self.cert_path.clone()).await, stamp(self.key_path.clone()).await)
    }
}

fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, ProxyError> {
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        ProxyError::Tls(format!("{what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| bad("certificate file", cert_path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate file", cert_path, &e))?;
    if certs.is_empty() {
        return Err(bad("certificate file", cert_path, &"no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| bad("key file", key_path, &e))?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| bad("key file", key_path, &e))?;
    let key = CertifiedKey::new(certs, signing);
    key.keys_match()
        .map_err(|e| bad("key file", key_path, &format!("does not match the certificate: {e}")))?;
    Ok(key)
}
