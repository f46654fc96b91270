//! TLS to Postgres, as the database URL asks for it, with libpq's meaning of
//! `sslmode` (so that a URL copied from a managed-database console means what
//! it says):
//!
//! | `sslmode`          | TLS                        | the server's certificate          |
//! |--------------------|----------------------------|-----------------------------------|
//! | `disable`          | never                      | —                                 |
//! | `prefer` (default) | if the server offers it    | not checked (chain if `sslrootcert`) |
//! | `require`          | always                     | not checked (chain if `sslrootcert`) |
//! | `verify-ca`        | always                     | chain to a trusted root           |
//! | `verify-full`      | always                     | chain, and the host name          |
//!
//! `sslrootcert` is a PEM file of trusted roots, or `system` for the
//! operating system's store; the `verify-*` modes need one (as in libpq,
//! which refuses them without a root file). Both parameters are read from the
//! query of a `postgres://` URL; the `key=value` form passes to the driver
//! as written, which knows `disable`, `prefer` and `require` only. Client
//! certificates (`sslcert`, `sslkey`) are not supported and refused at start.
//! Channel binding is not offered (SCRAM authenticates without it).

use std::{
    io,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use anyhow::{Context as _, bail};
use futures_util::future::BoxFuture;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// Where the trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Roots {
    File(PathBuf),
    System,
}

/// The TLS part of a database URL, taken out of it.
#[derive(Debug, PartialEq, Eq)]
struct TlsParameters {
    /// The URL with `verify-*` turned into `require` and `sslrootcert`
    /// removed: what the driver understands.
    url: String,
    check: Check,
    roots: Option<Roots>,
}

/// Reads the URL's TLS parameters and returns the URL for the driver and the
/// connector that secures its connections as they ask.
pub fn from_url(url: &str) -> anyhow::Result<(String, PostgresTls)> {
    let parameters = split(url)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match &parameters.roots {
        None => Arc::new(AnyCertificate(provider.signature_verification_algorithms)),
        Some(roots) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(
                Arc::new(load_roots(roots)?),
                provider.clone(),
            )
            .build()?;
            if parameters.check == Check::ChainAndName {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // What PostgreSQL 17's direct TLS negotiation asks for; older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok((
        parameters.url,
        PostgresTls {
            config: Arc::new(config),
        },
    ))
}

fn split(url: &str) -> anyhow::Result<TlsParameters> {
    let is_uri = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let (base, query) = match url.split_once('?') {
        Some((base, query)) if is_uri => (base, query),
        _ => {
            return Ok(TlsParameters {
                url: url.to_owned(),
                check: Check::Nothing,
                roots: None,
            });
        }
    };
    let (mut mode, mut roots) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = Some(value.to_owned()),
            "sslrootcert" => {
                let value = percent_decode(value)?;
                roots = Some(if value == "system" {
                    Roots::System
                } else {
                    Roots::File(value.into())
                });
            }
            "sslcert" | "sslkey" => {
                bail!("client certificates (sslcert, sslkey) are not supported for the database")
            }
            _ => kept.push(pair),
        }
    }
    let (driver_mode, check) = match mode.as_deref() {
        None => (None, Check::Nothing),
        Some(mode @ ("disable" | "prefer" | "require")) => (Some(mode), Check::Nothing),
        Some("verify-ca") => (Some("require"), Check::Chain),
        Some("verify-full") => (Some("require"), Check::ChainAndName),
        Some(other) => bail!(
            "the database URL's sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
        ),
    };
    // As libpq: a root file given with a weaker mode still checks the chain.
    let check = match (check, &roots) {
        (Check::Nothing, Some(_)) => Check::Chain,
        (Check::Nothing, None) => Check::Nothing,
        (check, Some(_)) => check,
        (_, None) => bail!(
            "sslmode={} needs sslrootcert=<PEM file> (or sslrootcert=system) in the database URL",
            mode.unwrap_or_default()
        ),
    };
    if let Some(mode) = driver_mode {
        kept.push(match mode {
            "disable" => "sslmode=disable",
            "prefer" => "sslmode=prefer",
            _ => "sslmode=require",
        });
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(TlsParameters { url, check, roots })
}

fn percent_decode(value: &str) -> anyhow::Result<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .context("a malformed %-escape in the database URL")?;
            decoded.push(hex);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).context("the database URL's sslrootcert is not UTF-8")
}

fn load_roots(roots: &Roots) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot read sslrootcert {}", path.display()))?;
            let (added, _) = store.add_parsable_certificates(certificates);
            anyhow::ensure!(
                added > 0,
                "no certificate in sslrootcert {}",
                path.display()
            );
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            anyhow::ensure!(
                !store.is_empty(),
                "sslrootcert=system, but the system has no trusted roots"
            );
        }
    }
    Ok(store)
}

/// `prefer` and `require` without roots: any certificate, as libpq does
/// (the connection is encrypted, not authenticated); the handshake's
/// signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not
/// checked (the verifier checks the chain first, so only a certificate with a
/// good chain gets as far as a name mismatch).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            outcome => outcome,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The driver's TLS connector, made once from the URL.
#[derive(Clone)]
pub struct PostgresTls {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for PostgresTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = Connect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connect, Self::Error> {
        Ok(Connect {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            server_name: ServerName::try_from(host)?.to_owned(),
        })
    }
}

/// One connection's handshake, towards one host.
pub struct Connect {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<TlsStream<S>>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = self.connector.connect(self.server_name, stream).await?;
            Ok(TlsStream(stream))
        })
    }
}

/// An encrypted connection to Postgres.
pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(url: &str) -> TlsParameters {
        split(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn a_url_without_tls_parameters_passes_unchanged() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/parley",
            "postgres://u@h/db?application_name=x",
            "host=localhost sslmode=require",
        ] {
            let split = parameters(url);
            assert_eq!(split.url, url);
            assert_eq!((split.check, split.roots), (Check::Nothing, None));
        }
    }

    #[test]
    fn verify_modes_become_require_for_the_driver_and_keep_their_check() {
        let split = parameters(
            "postgresql://u@db.example:5432/parley?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20bundle.pem&connect_timeout=3",
        );
        assert_eq!(
            split.url,
            "postgresql://u@db.example:5432/parley?connect_timeout=3&sslmode=require"
        );
        assert_eq!(split.check, Check::ChainAndName);
        assert_eq!(split.roots, Some(Roots::File("/etc/ca bundle.pem".into())));
        let split = parameters("postgres://u@h/db?sslrootcert=system&sslmode=verify-ca");
        assert_eq!(split.url, "postgres://u@h/db?sslmode=require");
        assert_eq!(
            (split.check, split.roots),
            (Check::Chain, Some(Roots::System))
        );
    }

    #[test]
    fn a_root_file_with_require_checks_the_chain_as_libpq_does() {
        let split = parameters("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem");
        assert_eq!(split.url, "postgres://u@h/db?sslmode=require");
        assert_eq!(split.check, Check::Chain);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        for url in [
            "postgres://u@h/db?sslmode=verify-full",
            "postgres://u@h/db?sslmode=allow-nothing",
            "postgres://u@h/db?sslmode=require&sslcert=/c.pem&sslkey=/k.pem",
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert=%zz",
        ] {
            assert!(split(url).is_err(), "{url}");
        }
    }
}
