//! TLS 1.3 both ways round: the receiver (server) demands a client certificate from the CA, the
//! sender (client) checks the receiver's certificate against the CA and the name it dialled.
//! There is no option to skip either check.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {what} {path}: {detail}")]
    File { what: &'static str, path: PathBuf, detail: String },
    #[error("TLS setup: {0}")]
    Config(String),
    #[error("{0}")]
    Handshake(String),
    /// The handshake failed over certificates: the peer's was refused, or it refused ours (the
    /// two ends' certificates do not fit), rather than over a peer that does not speak TLS 1.3
    /// with a certificate at all, or too slowly.
    #[error("{0}")]
    Certificate(String),
    #[error("{op} {addr}: {source}")]
    Net { op: &'static str, addr: String, source: std::io::Error },
}

/// The certificate and key of one end, and how it recognises the other: a CA the peer's
/// certificate must chain to, pinned SHA-256 fingerprints of the peer's certificate, or both.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub pins: Vec<[u8; 32]>,
}

/// `sha256:HEX` (colons between bytes allowed, as openssl prints them).
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: String = text.strip_prefix("sha256:")?.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The `sha256:HEX` fingerprint of the first certificate in a PEM file.
pub fn fingerprint(path: &Path) -> Result<String, TlsError> {
    let cert = certs(path, "certificate")?.remove(0);
    Ok(format!("sha256:{}", hex(&sha256(cert.as_ref()))))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref().try_into().expect("32 bytes")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks the peer's certificate against the CA (if any) and the pins (if any); verifies the
/// handshake signatures with the provider's algorithms either way.
#[derive(Debug)]
struct Pinned {
    server: Option<Arc<dyn rustls::client::danger::ServerCertVerifier>>,
    client: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    pins: Vec<[u8; 32]>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn check_pin(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.pins.is_empty() || self.pins.contains(&sha256(cert.as_ref())) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Some(v) = &self.server {
            v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        }
        self.check_pin(end_entity)?;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl rustls::server::danger::ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.client.as_ref().map_or(&[], |c| c.root_hint_subjects())
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        if let Some(v) = &self.client {
            v.verify_client_cert(end_entity, intermediates, now)?;
        }
        self.check_pin(end_entity)?;
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn no_peer_check() -> TlsError {
    TlsError::Config("give --ca (the peer's CA) or --peer-fingerprint: a peer is never accepted unchecked".into())
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

/// The receiver's configuration: TLS 1.3 only, a client certificate from the CA (or with a
/// pinned fingerprint) required.
pub fn server_config(c: &Credentials) -> Result<Arc<ServerConfig>, TlsError> {
    let client = match &c.ca {
        Some(ca) => Some(
            WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?,
        ),
        None if c.pins.is_empty() => return Err(no_peer_check()),
        None => None,
    };
    let verifier = Arc::new(Pinned {
        server: None,
        client,
        pins: c.pins.clone(),
        algorithms: provider().signature_verification_algorithms,
    });
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&c.cert, "certificate")?, key(&c.key)?)
        .map_err(|e| TlsError::Config(format!("{}: {e}", c.cert.display())))?;
    Ok(Arc::new(config))
}

/// The sender's configuration: TLS 1.3 only, the receiver's certificate checked against the CA
/// and the name dialled (or against the pinned fingerprints).
pub fn client_config(c: &Credentials) -> Result<Arc<ClientConfig>, TlsError> {
    let server: Option<Arc<dyn rustls::client::danger::ServerCertVerifier>> = match &c.ca {
        Some(ca) => Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?,
        ),
        None if c.pins.is_empty() => return Err(no_peer_check()),
        None => None,
    };
    let verifier = Arc::new(Pinned {
        server,
        client: None,
        pins: c.pins.clone(),
        algorithms: provider().signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(certs(&c.cert, "certificate")?, key(&c.key)?)
        .map_err(|e| TlsError::Config(format!("{}: {e}", c.cert.display())))?;
    Ok(Arc::new(config))
}

/// The handshake's error, told apart by whether certificates were refused (see [`TlsError`]).
fn failed(e: &std::io::Error, peer: &str) -> TlsError {
    use rustls::{AlertDescription as Alert, Error as E};
    let line = explain(e, peer);
    match e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) {
        Some(E::InvalidCertificate(_))
        | Some(E::AlertReceived(
            Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::AccessDenied,
        )) => TlsError::Certificate(line),
        _ => TlsError::Handshake(line),
    }
}

/// Says why a handshake failed in words an operator can act on.
pub fn explain(e: &std::io::Error, peer: &str) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    let text = e.to_string();
    let why = match e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) {
        Some(E::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature)) => {
            "its certificate is not signed by our CA (--ca)"
        }
        Some(E::InvalidCertificate(Cert::ApplicationVerificationFailure)) => {
            "its certificate's fingerprint is not one of --peer-fingerprint"
        }
        Some(E::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. })) => "its certificate has expired",
        Some(E::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. })) => {
            "its certificate is not valid yet"
        }
        Some(E::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. })) => {
            "its certificate does not name the host dialled"
        }
        Some(E::NoCertificatesPresented) => "it presented no certificate",
        Some(E::PeerIncompatible(_) | E::AlertReceived(Alert::ProtocolVersion)) => "it does not speak TLS 1.3",
        Some(E::AlertReceived(_)) => "it refused our certificate (is it signed by the CA the peer trusts?)",
        Some(E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. }) => {
            "it does not speak TLS"
        }
        _ => "",
    };
    if why.is_empty() {
        format!("TLS handshake with {peer} failed: {text}")
    } else {
        format!("TLS handshake with {peer} failed: {why} ({text})")
    }
}

pub type ClientStream = StreamOwned<ClientConnection, TcpStream>;
pub use rustls::ClientConfig as DbClientConfig;
pub use rustls::ServerConfig as ReceiverConfig;
pub type ServerStream = StreamOwned<ServerConnection, TcpStream>;

/// Connects to `addr` (`host:port`), completes the handshake (within `stall` in all), and returns
/// the stream. Reads and writes that stall for `stall` fail.
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
    let mut io = Deadline::new(&stream.sock, stall);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut io) {
            last_gasp(&mut stream.conn, &mut io);
            return Err(failed(&e, addr));
        }
    }
    io.done().map_err(|e| net("configure", e))?;
    Ok(stream)
}

/// The socket of a handshake, whose reads and writes share one deadline (the stall timeout from
/// the start): a peer that trickles its handshake a byte at a time cannot keep it going longer.
/// Afterwards each read and write has the stall timeout again.
struct Deadline<'a> {
    sock: &'a TcpStream,
    stall: Duration,
    until: Instant,
}

impl<'a> Deadline<'a> {
    fn new(sock: &'a TcpStream, stall: Duration) -> Self {
        Self { sock, stall, until: Instant::now() + stall }
    }

    /// The time left, or the error that the handshake took too long.
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.late());
        }
        Ok(left)
    }

    fn late(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("it did not complete within {} s (--stall-timeout)", self.stall.as_secs()),
        )
    }

    /// A timed-out read or write is the deadline passing.
    fn timed<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        match r {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Err(self.late())
            }
            other => other,
        }
    }

    fn done(self) -> std::io::Result<()> {
        self.sock.set_read_timeout(Some(self.stall))?;
        self.sock.set_write_timeout(Some(self.stall))
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.sock.set_read_timeout(Some(self.left()?))?;
        let r = { self.sock }.read(buf);
        self.timed(r)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sock.set_write_timeout(Some(self.left()?))?;
        let r = { self.sock }.write(buf);
        self.timed(r)
    }
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.sock.set_write_timeout(Some(self.left()?))?;
        let r = { self.sock }.write_vectored(bufs);
        self.timed(r)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// After a failed handshake, sends what is still queued (the alert that tells the peer why)
/// before the connection closes: rustls's own last write after an error writes only the first
/// of its queued records, so a peer could see the connection end without the alert.
fn last_gasp<D>(conn: &mut rustls::ConnectionCommon<D>, io: &mut Deadline<'_>) {
    while conn.wants_write() {
        if !conn.write_tls(io).is_ok_and(|n| n > 0) {
            break;
        }
    }
}

/// Waits for one connection on `listener`, completes the handshake (the client's certificate
/// verified), and returns the stream and the peer's address.
pub fn accept(
    listener: &TcpListener,
    config: Arc<ServerConfig>,
    stall: Duration,
) -> Result<(ServerStream, String), TlsError> {
    let (tcp, _) = listener.accept().map_err(|e| TlsError::Net {
        op: "accept on",
        addr: format!("{:?}", listener.local_addr().ok()),
        source: e,
    })?;
    handshake_server(tcp, config, stall)
}

/// The receiver's side of the handshake on an accepted connection, within `stall` in all.
pub fn handshake_server(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    stall: Duration,
) -> Result<(ServerStream, String), TlsError> {
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "the peer".into());
    tcp.set_read_timeout(Some(stall)).and_then(|()| tcp.set_write_timeout(Some(stall))).map_err(|e| TlsError::Net {
        op: "configure",
        addr: peer.clone(),
        source: e,
    })?;
    let _ = tcp.set_nodelay(true);
    let conn = ServerConnection::new(config).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut stream = StreamOwned::new(conn, tcp);
    let mut io = Deadline::new(&stream.sock, stall);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut io) {
            last_gasp(&mut stream.conn, &mut io);
            return Err(failed(&e, &peer));
        }
    }
    io.done().map_err(|e| TlsError::Net { op: "configure", addr: peer.clone(), source: e })?;
    Ok((stream, peer))
}

/// How a database server's certificate is checked (MySQL's `--ssl-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbVerify {
    /// Encrypted only: the certificate is not checked (the handshake's signatures are).
    None,
    /// Signed by the CA given.
    Ca,
    /// Signed by the CA given, and naming the host connected to.
    Identity,
}

/// Accepts a certificate whose chain `inner` accepts, whatever name it holds (VERIFY_CA), or
/// any certificate (REQUIRED); handshake signatures are always verified.
#[derive(Debug)]
struct DbVerifier {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for DbVerifier {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else { return Ok(rustls::client::danger::ServerCertVerified::assertion()) };
        match inner.verify_server_cert(end, intermediates, name, ocsp, now) {
            // The chain was checked before the name: only the name failed.
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client configuration for a database server (TLS 1.2 or 1.3, as servers speak both): its
/// certificate checked as `verify` says against `ca`, and our certificate and key if given.
pub fn db_client_config(
    verify: DbVerify,
    ca: Option<&Path>,
    ours: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let algorithms = provider().signature_verification_algorithms;
    let webpki = match (verify, ca) {
        (DbVerify::None, _) => None,
        (_, Some(ca)) => Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?,
        ),
        (_, None) => return Err(TlsError::Config("checking the server's certificate needs its CA (--ssl-ca)".into())),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (verify, webpki) {
        (DbVerify::Identity, Some(v)) => builder.with_webpki_verifier(v),
        (_, inner) => builder.dangerous().with_custom_certificate_verifier(Arc::new(DbVerifier { inner, algorithms })),
    };
    let config = match ours {
        Some((cert, key_file)) => builder
            .with_client_auth_cert(certs(cert, "certificate")?, key(key_file)?)
            .map_err(|e| TlsError::Config(format!("{}: {e}", cert.display())))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Starts TLS on a connected socket (after the database protocol's own request for it), with
/// `host` as the name the certificate must hold.
pub fn upgrade(tcp: TcpStream, config: Arc<ClientConfig>, host: &str) -> Result<ClientStream, TlsError> {
    let name =
        ServerName::try_from(host.to_owned()).map_err(|_| TlsError::Config(format!("{host} is not a host name")))?;
    let conn = ClientConnection::new(config, name).map_err(|e| TlsError::Config(e.to_string()))?;
    // The whole handshake within the socket's read timeout (a server that trickles it byte by
    // byte cannot keep it going longer), as a transfer's.
    let stall = tcp.read_timeout().ok().flatten().unwrap_or(Duration::from_secs(30));
    let mut stream = StreamOwned::new(conn, tcp);
    let mut io = Deadline::new(&stream.sock, stall);
    while stream.conn.is_handshaking() {
        if let Err(e) = stream.conn.complete_io(&mut io) {
            last_gasp(&mut stream.conn, &mut io);
            return Err(TlsError::Handshake(explain(&e, host)));
        }
    }
    io.done().map_err(|e| TlsError::Handshake(e.to_string()))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One handshake on loopback between a client and a server built from these credentials:
    /// what each end's handshake returned.
    fn handshake_pair(client: &Credentials, server: &Credentials) -> (Result<(), TlsError>, Result<(), TlsError>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server_config = server_config(server).unwrap();
        let accepted = std::thread::spawn(move || accept(&listener, server_config, Duration::from_secs(5)).map(drop));
        // In TLS 1.3 a client's handshake ends before the server has checked its certificate:
        // the server's verdict is the client's first read.
        let connected = connect(&addr, client_config(client).unwrap(), Duration::from_secs(5))
            .and_then(|mut s| s.read_exact(&mut [0u8; 1]).map_err(|e| failed(&e, &addr)));
        (connected, accepted.join().unwrap())
    }

    /// The end that refuses the other's certificate tells it so: the other sees the alert and
    /// says it was refused, every time (the alert used to be left unsent when rustls had
    /// another record queued, and the other end saw only the connection end).
    #[test]
    fn a_refused_certificate_is_always_said() {
        let dir = tempfile::tempdir().unwrap();
        let ours = crate::pki::generate(&dir.path().join("ours"), "node", &["127.0.0.1".into()], 2).unwrap();
        let theirs = crate::pki::generate(&dir.path().join("theirs"), "stranger", &["127.0.0.1".into()], 2).unwrap();
        let trusting = |g: &crate::pki::Generated, ca: &Path| Credentials {
            cert: g.cert.clone(),
            key: g.key.clone(),
            ca: Some(ca.to_path_buf()),
            pins: Vec::new(),
        };
        let (us, stranger) = (trusting(&ours, &ours.ca), trusting(&theirs, &ours.ca));
        for _ in 0..20 {
            // A receiver whose certificate our CA did not sign.
            let (client, server) = handshake_pair(&us, &stranger);
            assert!(matches!(client, Err(TlsError::Certificate(_))), "{client:?}");
            assert!(
                matches!(&server, Err(TlsError::Certificate(m)) if m.contains("refused our certificate")),
                "{server:?}"
            );
            // A sender whose certificate our CA did not sign.
            let (client, server) = handshake_pair(&stranger, &us);
            assert!(
                matches!(&client, Err(TlsError::Certificate(m)) if m.contains("refused our certificate")),
                "{client:?}"
            );
            assert!(matches!(server, Err(TlsError::Certificate(_))), "{server:?}");
        }
    }

    /// A server that trickles its side of the handshake a byte at a time holds the database
    /// client no longer than its read timeout (each byte used to restart it).
    #[test]
    fn a_trickled_handshake_ends_within_the_read_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // A TLS record header, then its body a byte every 100 ms.
            let _ = s.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]);
            while s.write_all(&[0]).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let (done, took) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let tcp = TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let config = db_client_config(DbVerify::None, None, None).unwrap();
            let started = Instant::now();
            let r = upgrade(tcp, config, "127.0.0.1");
            let _ = done.send((r.is_err(), started.elapsed()));
        });
        let (failed, elapsed) = took.recv_timeout(Duration::from_secs(10)).expect("the handshake ended");
        assert!(failed && elapsed < Duration::from_secs(5), "{elapsed:?}");
    }

    #[test]
    fn handshake_failures_are_explained() {
        use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
        let now = rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(2_000_000_000));
        let then = rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(1_900_000_000));
        let name = ServerName::try_from("127.0.0.1").unwrap();
        for (e, says) in [
            (E::InvalidCertificate(Cert::UnknownIssuer), "not signed by our CA"),
            (E::InvalidCertificate(Cert::ExpiredContext { time: now, not_after: then }), "has expired"),
            (
                E::InvalidCertificate(Cert::NotValidForNameContext { expected: name, presented: vec!["x".into()] }),
                "does not name the host dialled",
            ),
            (E::NoCertificatesPresented, "presented no certificate"),
            (E::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOfferedOrEnabled), "does not speak TLS 1.3"),
            (E::AlertReceived(Alert::ProtocolVersion), "does not speak TLS 1.3"),
            (E::AlertReceived(Alert::UnknownCA), "refused our certificate"),
            (E::InvalidMessage(rustls::InvalidMessage::InvalidContentType), "does not speak TLS"),
        ] {
            let line = explain(&std::io::Error::new(std::io::ErrorKind::InvalidData, e), "p:1");
            assert!(line.starts_with("TLS handshake with p:1 failed: ") && line.contains(says), "{line}");
        }
        let line = explain(&std::io::ErrorKind::ConnectionReset.into(), "p:1");
        assert!(!line.contains('('), "{line}");
        let io = |e: E| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        for e in [E::InvalidCertificate(Cert::UnknownIssuer), E::AlertReceived(Alert::UnknownCA)] {
            assert!(matches!(failed(&io(e), "p"), TlsError::Certificate(_)));
        }
        for e in [
            E::NoCertificatesPresented,
            E::AlertReceived(Alert::ProtocolVersion),
            E::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        ] {
            assert!(matches!(failed(&io(e), "p"), TlsError::Handshake(_)));
        }
        assert!(matches!(failed(&std::io::ErrorKind::TimedOut.into(), "p"), TlsError::Handshake(_)));
    }
}
