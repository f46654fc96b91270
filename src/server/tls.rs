//! TLS 1.3 termination in Parley itself, for deployments without a proxy in
//! front (`PARLEY_TLS_CERT` and `PARLEY_TLS_KEY`, PEM files): only TLS 1.3 is
//! spoken, and the certificate is read again on SIGHUP (a renewed one takes
//! effect for new connections; a file that cannot be read keeps the old one,
//! with a log line).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use anyhow::Context;
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use tokio_rustls::TlsAcceptor;

/// The server's certificate and key, reloadable.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the certificate chain and key (refusing to start without them).
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(config(cert, key)?),
        })
    }

    /// What accepts the next connection (with the certificate of now).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }

    /// Reads the files again; on failure the current certificate stays.
    pub fn reload(&self) {
        match config(&self.cert, &self.key) {
            Ok(fresh) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "TLS certificate not reloaded; the old one stays")
            }
        }
    }

    /// Reloads on every SIGHUP, for as long as the process runs.
    pub fn reload_on_hangup(self: &Arc<Self>) {
        let tls = self.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot watch SIGHUP: the TLS certificate will not reload");
                return;
            };
            while hangups.recv().await.is_some() {
                tls.reload();
            }
        });
    }
}

fn config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    crate::push::install_tls_provider();
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let mut config = ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key do not make a TLS configuration")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
