//! TLS 1.3 both ways round: the receiver (server) demands a client certificate from the CA, the
//! sender (client) checks the receiver's certificate against the CA and the name it dialled.
//! There is no option to skip either check.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {what} {path}: {detail}")]
    File { what: &'static str, path: PathBuf, detail: String },
    #[error("TLS setup: {0}")]
    Config(String),
    #[error("{0}")]
    Handshake(String),
    #[error("{op} {addr}: {source}")]
    Net { op: &'static str, addr: String, source: std::io::Error },
}

/// The certificate, key and CA of one end.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |detail: String| TlsError::File { what, path: path.into(), detail };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what: "private key",
        path: path.into(),
        detail: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(path, "CA certificate")? {
        roots.add(c).map_err(|e| TlsError::File {
            what: "CA certificate",
            path: path.into(),
            detail: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The receiver's configuration: TLS 1.3 only, a client certificate from the CA required.
pub fn server_config(c: &Credentials) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&c.ca)?, provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&c.cert, "certificate")?, key(&c.key)?)
        .map_err(|e| TlsError::Config(format!("{}: {e}", c.cert.display())))?;
    Ok(Arc::new(config))
}

/// The sender's configuration: TLS 1.3 only, the receiver's certificate checked against the CA.
pub fn client_config(c: &Credentials) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(&c.ca)?)
        .with_client_auth_cert(certs(&c.cert, "certificate")?, key(&c.key)?)
        .map_err(|e| TlsError::Config(format!("{}: {e}", c.cert.display())))?;
    Ok(Arc::new(config))
}

/// Says why a handshake failed in words an operator can act on.
pub fn explain(e: &std::io::Error, peer: &str) -> String {
    let text = e.to_string();
    let why = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        "its certificate is not signed by our CA (--ca)"
    } else if text.contains("Expired") {
        "its certificate has expired"
    } else if text.contains("NotValidForName") {
        "its certificate does not name the host dialled"
    } else if text.contains("NoCertificatesPresented") || text.contains("CertificateRequired") {
        "it presented no certificate"
    } else if text.contains("fatal alert") {
        "it refused our certificate (is it signed by the CA the peer trusts?)"
    } else if text.contains("InvalidContentType") || text.contains("corrupt message") || text.contains("InvalidMessage")
    {
        "it does not speak TLS"
    } else {
        ""
    };
    if why.is_empty() {
        format!("TLS handshake with {peer} failed: {text}")
    } else {
        format!("TLS handshake with {peer} failed: {why} ({text})")
    }
}

pub type ClientStream = StreamOwned<ClientConnection, TcpStream>;
pub type ServerStream = StreamOwned<ServerConnection, TcpStream>;

/// Connects to `addr` (`host:port`), completes the handshake, and returns the stream. Reads
/// and writes that stall for `stall` fail.
pub fn connect(addr: &str, config: Arc<ClientConfig>, stall: Duration) -> Result<ClientStream, TlsError> {
    let net = |op, source| TlsError::Net { op, addr: addr.into(), source };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    let name =
        ServerName::try_from(host.to_owned()).map_err(|_| TlsError::Config(format!("{host} is not a host name")))?;
    let sock_addr = addr
        .to_socket_addrs()
        .map_err(|e| net("resolve", e))?
        .next()
        .ok_or_else(|| net("resolve", std::io::ErrorKind::NotFound.into()))?;
    let tcp = TcpStream::connect_timeout(&sock_addr, stall).map_err(|e| net("connect to", e))?;
    tcp.set_read_timeout(Some(stall))
        .and_then(|()| tcp.set_write_timeout(Some(stall)))
        .map_err(|e| net("configure", e))?;
    let _ = tcp.set_nodelay(true);
    let conn = ClientConnection::new(config, name).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| TlsError::Handshake(explain(&e, addr)))?;
    }
    Ok(stream)
}

/// Waits for one connection on `listener`, completes the handshake (the client's certificate
/// verified), and returns the stream and the peer's address.
pub fn accept(
    listener: &TcpListener,
    config: Arc<ServerConfig>,
    stall: Duration,
) -> Result<(ServerStream, String), TlsError> {
    let (tcp, peer) = listener.accept().map_err(|e| TlsError::Net {
        op: "accept on",
        addr: format!("{:?}", listener.local_addr().ok()),
        source: e,
    })?;
    let peer = peer.to_string();
    tcp.set_read_timeout(Some(stall)).and_then(|()| tcp.set_write_timeout(Some(stall))).map_err(|e| TlsError::Net {
        op: "configure",
        addr: peer.clone(),
        source: e,
    })?;
    let _ = tcp.set_nodelay(true);
    let conn = ServerConnection::new(config).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| TlsError::Handshake(explain(&e, &peer)))?;
    }
    Ok((stream, peer))
}
