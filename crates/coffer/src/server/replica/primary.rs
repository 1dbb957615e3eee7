//! The primary a replica is seeded for, probed before anything is written: reached as the
//! replica will reach it (TLS that checks the CA and the host name, the replication account),
//! what it is, and whether its binary log still holds a backup's position, asked the server's
//! own way (a dump from that position: the server looks it up as it would for the replica).
//!
//! The password lives in a `Zeroizing` string and is never in an error, a `Debug` or a report.

use crate::error::{Error, Result};
use coffer_mysql::client::{Client, ClientError, ResultCap, Target, Tls, DUMP_NON_BLOCK};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// How long a connection waits for the primary (each connect, read and write).
const TIMEOUT: Duration = Duration::from_secs(20);

/// How long a probe's dump waits: the server reads the log from the start of the file that
/// holds the position and sends nothing for what it skips (no heartbeat either).
const DUMP_TIMEOUT: Duration = Duration::from_secs(180);

/// The archiver's default replica id (`binlog archive --server-id`): a probe never takes it, or
/// the primary would end that archiver's dump.
const ARCHIVER_ID: u32 = 1_953_654_127;

/// How coffer and the replica reach the primary.
#[derive(Debug, Clone)]
pub struct PrimarySpec {
    /// Its host name or address, as the certificate must name it.
    pub host: String,
    /// Its port (3306 unless given).
    pub port: u16,
    /// The replication account (it needs REPLICATION SLAVE).
    pub user: String,
    /// The file holding the account's password (its mode checked when read).
    pub password_file: PathBuf,
    /// None: plaintext, asked for by name (`--ssl-mode DISABLED`).
    pub tls: Option<PrimaryTls>,
}

/// TLS to the primary: always verified against `ca`, host name included, because the
/// replica's server checks both whenever it checks the certificate.
#[derive(Debug, Clone)]
pub struct PrimaryTls {
    /// The CA that signs the primary's certificate (PEM).
    pub ca: PathBuf,
    /// Our certificate, for a primary that asks for one (PEM), with its key.
    pub cert: Option<PathBuf>,
    /// The key of `cert` (PEM).
    pub key: Option<PathBuf>,
}

impl PrimarySpec {
    /// The primary the options name: `address` HOST[:PORT] (`[V6]:PORT` too), `mode`
    /// VERIFY_IDENTITY (the default), VERIFY_CA (the same check here) or DISABLED (plaintext).
    /// REQUIRED is refused: a replica so configured goes on in plaintext, without a word, when
    /// the primary offers no TLS.
    pub fn new(
        address: &str,
        user: Option<&str>,
        password_file: Option<&Path>,
        mode: Option<&str>,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<PrimarySpec> {
        let (host, port) = parse_address(address)?;
        let user = user.filter(|u| !u.is_empty()).ok_or_else(|| Error::usage("--primary needs --user"))?;
        let password_file = password_file.ok_or_else(|| Error::usage("--primary needs --password-file"))?;
        if cert.is_some() != key.is_some() {
            return Err(Error::usage("--ssl-cert and --ssl-key go together"));
        }
        let mode = mode.unwrap_or("VERIFY_IDENTITY").to_ascii_uppercase().replace('-', "_");
        let tls = match (mode.as_str(), ca) {
            ("VERIFY_IDENTITY" | "VERIFY_CA", Some(ca)) => Some(PrimaryTls { ca, cert, key }),
            ("VERIFY_IDENTITY" | "VERIFY_CA", None) => {
                return Err(Error::usage(
                    "--ssl-ca is needed: TLS to the primary is verified (plaintext only with --ssl-mode DISABLED)",
                ))
            }
            ("DISABLED", None) if cert.is_none() => None,
            ("DISABLED", _) => {
                return Err(Error::usage("--ssl-mode DISABLED takes no --ssl-ca, --ssl-cert or --ssl-key"))
            }
            ("REQUIRED", _) => return Err(Error::usage(REQUIRED)),
            _ => {
                let shown = crate::text::escape(mode.as_bytes());
                return Err(Error::usage(format!("--ssl-mode {shown}: VERIFY_IDENTITY, VERIFY_CA or DISABLED")));
            }
        };
        Ok(PrimarySpec { host, port, user: user.to_owned(), password_file: password_file.to_owned(), tls })
    }

    /// `HOST:PORT`, as messages name the primary.
    pub fn address(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }
}

const REQUIRED: &str = "--ssl-mode REQUIRED is refused: a replica told so replicates in plaintext, without a word, \
     from a primary that offers no TLS; give --ssl-ca (VERIFY_IDENTITY, the default), or --ssl-mode DISABLED by name";

/// HOST[:PORT] (port 3306 when absent); an IPv6 address in brackets.
fn parse_address(s: &str) -> Result<(String, u16)> {
    let bad = || Error::usage(format!("--primary {}: give HOST or HOST:PORT", crate::text::escape(s.as_bytes())));
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => match rest.split_once(']').ok_or_else(bad)? {
            (host, "") => (host, None),
            (host, after) => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        },
        None => match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(bad()),
            None => (s, None),
        },
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        None => 3306,
    };
    let plain = host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if host.is_empty() || host.len() > 255 || !plain {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Reads the password file (its mode checked), without its line end. A NUL, CR or LF inside
/// is refused: the replica keeps the password as one line of master.info. Nothing said of it
/// shows the value.
pub(crate) fn read_password(path: &Path) -> Result<Zeroizing<String>> {
    let bytes = crate::keys::read_secret(path, "password file", false)?;
    let shown = path.display();
    let text =
        std::str::from_utf8(&bytes).map_err(|_| Error::usage(format!("the password file {shown} is not UTF-8")))?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.contains(['\0', '\r', '\n']) {
        return Err(Error::usage(format!(
            "the password file {shown} holds a NUL, CR or LF inside its line; the replica keeps the password \
             as one line of master.info: refusing"
        )));
    }
    Ok(Zeroizing::new(text.to_owned()))
}

/// Where a replica starts: after a MariaDB GTID position, or at a place in a binary log file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Position {
    Gtid(String),
    File(String, u32),
}

impl Position {
    /// The position a backup's description records: its GTID when it is MariaDB's, else its
    /// file and offset; None when it records neither in a form a dump takes.
    pub(crate) fn of(binlog: &coffer_mysql::meta::BinlogPosition) -> Option<Position> {
        use coffer_mysql::meta::{is_binlog_file_name, is_mariadb_gtid_list};
        match &binlog.gtid {
            Some(g) if !g.is_empty() && is_mariadb_gtid_list(g) => Some(Position::Gtid(g.clone())),
            _ => {
                let at = u32::try_from(binlog.position).ok().filter(|p| *p >= 4)?;
                is_binlog_file_name(&binlog.file).then(|| Position::File(binlog.file.clone(), at))
            }
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Gtid(g) => write!(f, "GTID {g}"),
            Position::File(file, at) => write!(f, "{file}:{at}"),
        }
    }
}

/// What the primary says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct About {
    pub version: String,
    pub server_id: u32,
    pub gtid_binlog_pos: String,
    pub gtid_strict_mode: bool,
}

/// Whether the primary's binary log holds a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    Yes,
    /// The logs from there are purged (the server's words, escaped).
    Purged(String),
    /// The position names transactions the primary never had: a backup of another server, or
    /// of a history that went another way (the server's words, escaped).
    Diverged(String),
}

/// A connection to the primary, authenticated, and what it takes to open more.
pub(crate) struct Primary {
    spec: PrimarySpec,
    password: Zeroizing<String>,
    tls: Option<Tls>,
    client: Client,
    /// The replica id this probe's dumps announce.
    probe_id: u32,
}

impl std::fmt::Debug for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primary")
            .field("address", &self.spec.address())
            .field("user", &self.spec.user)
            .finish_non_exhaustive()
    }
}

impl Primary {
    /// Reads the password, connects and authenticates as the replica will, and picks the
    /// probe's replica id.
    pub(crate) fn connect(spec: &PrimarySpec) -> Result<Primary> {
        let password = read_password(&spec.password_file)?;
        let tls = match &spec.tls {
            Some(t) => Some(client_tls(t, &spec.host)?),
            None => None,
        };
        let client = open(spec, &password, tls.as_ref(), TIMEOUT)?;
        let mut primary = Primary { spec: spec.clone(), password, tls, client, probe_id: 0 };
        primary.probe_id = primary.pick_probe_id();
        Ok(primary)
    }

    /// The replication password, for CHANGE MASTER.
    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// The primary's version, id and GTID state; refuses a server that is not MariaDB.
    pub(crate) fn about(&mut self) -> Result<About> {
        let sql = "SELECT @@version, @@server_id, @@gtid_binlog_pos, @@gtid_strict_mode";
        let version = self.client.server_version().to_owned();
        let row = match self.client.query_capped(sql, ResultCap::FEW) {
            Ok(rows) => rows.into_iter().next().unwrap_or_default(),
            // MySQL has no @@gtid_binlog_pos.
            Err(ClientError::Server { code: 1193, .. }) => Vec::new(),
            Err(e) => return Err(unreachable(&self.spec, e)),
        };
        let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let version = Some(cell(0)).filter(|v| !v.is_empty()).unwrap_or(version);
        if !version.contains("MariaDB") {
            crate::bail!(
                "the primary {} is {}, not MariaDB: coffer seeds MariaDB replicas",
                self.spec.address(),
                crate::text::escape(version.as_bytes())
            );
        }
        let gtid_binlog_pos = cell(2);
        let server_id = cell(1).parse().ok();
        let (Some(server_id), true) = (server_id, coffer_mysql::meta::is_mariadb_gtid_list(&gtid_binlog_pos)) else {
            crate::bail!("the primary {} answers its server id and GTID position with nonsense", self.spec.address());
        };
        Ok(About { version, server_id, gtid_binlog_pos, gtid_strict_mode: cell(3) == "1" })
    }

    /// Whether the primary's binary log still holds `from`: a dump from there, on a connection
    /// of its own, read until the first transaction (or the log's end: the primary is at that
    /// very position).
    pub(crate) fn holds(&self, from: &Position) -> Result<Held> {
        let mut c = open(&self.spec, &self.password, self.tls.as_ref(), DUMP_TIMEOUT)?;
        let started = match from {
            Position::Gtid(g) => c.dump_gtid(g, self.probe_id, DUMP_NON_BLOCK, TIMEOUT),
            Position::File(file, at) => c.dump(file, *at, self.probe_id, DUMP_NON_BLOCK, TIMEOUT),
        };
        let mut seen = 0usize;
        let answer = started.and_then(|()| loop {
            match c.next_event()? {
                None => break Ok(()),
                Some((h, _)) if h.type_code == coffer_mysql::events::GTID => break Ok(()),
                // Events flow from the position: it is there.
                Some(_) if seen >= 10_000 => break Ok(()),
                Some(_) => seen += 1,
            }
        });
        match answer {
            Ok(()) => Ok(Held::Yes),
            Err(e) => held(&self.spec, e, from),
        }
    }

    /// A replica id high in the range that is neither the primary's nor a connected replica's
    /// (when the account may list them) nor the archiver's default: a dump under a replica's
    /// id makes the primary end that replica's dump.
    fn pick_probe_id(&mut self) -> u32 {
        let mut taken = vec![ARCHIVER_ID];
        let ask = |c: &mut Client, sql: &str, column: usize| -> Vec<u32> {
            let rows = c.query_capped(sql, ResultCap { rows: 100_000, bytes: 16 << 20 }).unwrap_or_default();
            rows.iter().filter_map(|r| r.get(column)?.as_deref()?.parse().ok()).collect()
        };
        taken.extend(ask(&mut self.client, "SELECT @@server_id", 0));
        // Needs REPLICATION MASTER ADMIN: without it, chance alone keeps the ids apart.
        taken.extend(ask(&mut self.client, "SHOW SLAVE HOSTS", 0));
        let mut b = [0u8; 4];
        let r = coffer_crypto::random(&mut b).map(|()| u32::from_le_bytes(b)).unwrap_or(0x0bad_cafe);
        let mut id = 0xf000_0000 | (r & 0x0fff_ffff);
        while taken.contains(&id) {
            id = 0xf000_0000 | (id.wrapping_add(1) & 0x0fff_ffff);
        }
        id
    }
}

/// The most positions `catalog --primary` asks about (one dump each); beyond, "?".
const CATALOG_POSITIONS: usize = 200;

/// Tells each backup of `catalog` that has a binary log position whether the primary still has
/// the log from there (`primary_has_binlog`: true, false, or null when not asked; and
/// `primary_binlog`: has, purged, diverged, ?): one dump per distinct position, each on a
/// connection of its own. Fails when the primary cannot be reached or refuses the account.
pub fn catalog_primary(
    catalog: &mut crate::repo::catalog::Catalog,
    spec: &PrimarySpec,
    env: &crate::Env,
) -> Result<()> {
    let mut primary = Primary::connect(spec)?;
    primary.about()?;
    let mut answers: Vec<(Position, Held)> = Vec::new();
    let mut beyond = 0;
    for row in &mut catalog.rows {
        let Ok(binlog) = serde_json::from_value(row["backup"]["binlog"].clone()) else { continue };
        let Some(position) = Position::of(&binlog) else {
            row["primary_has_binlog"] = serde_json::Value::Null;
            row["primary_binlog"] = "?".into();
            continue;
        };
        let known = answers.iter().find(|(p, _)| *p == position).map(|(_, h)| h.clone());
        let held = match known {
            Some(h) => Some(h),
            None if answers.len() < CATALOG_POSITIONS => {
                let h = primary.holds(&position)?;
                answers.push((position, h.clone()));
                Some(h)
            }
            None => {
                beyond += 1;
                None
            }
        };
        let (has, word) = match held {
            Some(Held::Yes) => (serde_json::Value::Bool(true), "has"),
            Some(Held::Purged(_)) => (false.into(), "purged"),
            Some(Held::Diverged(_)) => (false.into(), "diverged"),
            None => (serde_json::Value::Null, "?"),
        };
        row["primary_has_binlog"] = has;
        row["primary_binlog"] = word.into();
    }
    if !catalog.rows.iter().any(|r| r.get("primary_binlog").is_some()) {
        env.report.warn("no backup shows a binary log position to ask the primary about (the key opens them)");
    }
    if beyond > 0 {
        env.report.warn(&format!("{beyond} backups not asked of the primary: {CATALOG_POSITIONS} positions at most"));
    }
    Ok(())
}

/// The client's TLS: the CA and the host name checked (the replica's server checks both).
fn client_tls(t: &PrimaryTls, host: &str) -> Result<Tls> {
    use coffer_net::tls::{db_client_config, DbVerify};
    let ours = t.cert.as_deref().zip(t.key.as_deref());
    let config = db_client_config(DbVerify::Identity, Some(&t.ca), ours)
        .map_err(|e| Error::msg(format!("TLS to the primary: {e}")))?;
    Ok(Tls { config, host: host.to_owned() })
}

fn open(spec: &PrimarySpec, password: &str, tls: Option<&Tls>, timeout: Duration) -> Result<Client> {
    let target = Target::Tcp { host: spec.host.clone(), port: spec.port };
    Client::connect(&target, &spec.user, password.as_bytes(), timeout, tls).map_err(|e| unreachable(spec, e))
}

/// What a dump's failure says of `from`.
fn held(spec: &PrimarySpec, e: ClientError, from: &Position) -> Result<Held> {
    let ClientError::Server { code: 1236, message, .. } = &e else { return Err(unreachable(spec, e)) };
    let words = crate::text::escape(message.as_bytes());
    let purged = ["Could not find GTID state requested", "Could not find first log file name"];
    if purged.iter().any(|p| message.contains(p)) {
        return Ok(Held::Purged(words));
    }
    if message.contains("which is not in the master's binlog") {
        return Ok(Held::Diverged(words));
    }
    Err(Error::msg(format!("the primary {} cannot send its binary log from {from}: {words}", spec.address())))
}

/// A failure to reach the primary or to be let in, on one line.
fn unreachable(spec: &PrimarySpec, e: ClientError) -> Error {
    use std::io::ErrorKind;
    let user = crate::text::escape(spec.user.as_bytes());
    let why = match &e {
        ClientError::Server { code: 1045, message, .. } => {
            // MariaDB 10.11 refuses plaintext under require_secure_transport with this error too.
            let plain = if spec.tls.is_none() { "; or it takes TLS connections only" } else { "" };
            format!("wrong user or password for {user}{plain} ({})", crate::text::escape(message.as_bytes()))
        }
        ClientError::Server { code: 1227, .. } => format!("the account {user} lacks REPLICATION SLAVE (ERROR 1227)"),
        ClientError::Tls(t) if t.contains("UnknownIssuer") || t.contains("not signed by our CA") => {
            let ca = spec.tls.as_ref().map(|t| t.ca.display().to_string()).unwrap_or_default();
            format!("TLS: its certificate is not signed by the CA {ca}")
        }
        ClientError::Tls(t) if t.contains("NotValidForName") || t.contains("does not name the host") => format!(
            "TLS: its certificate does not name {} (the replica checks the host name too; coffer reads \
             subjectAltName, not the CN)",
            spec.host
        ),
        ClientError::AuthMethod(m) => format!(
            "the account {user} authenticates by {}; coffer speaks mysql_native_password only \
             (ALTER USER ... IDENTIFIED VIA mysql_native_password)",
            crate::text::escape(m.as_bytes())
        ),
        ClientError::Io(io) => match io.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => "no answer in time".into(),
            ErrorKind::UnexpectedEof => "the primary closed the connection".into(),
            _ => io.to_string(),
        },
        e => e.to_string(),
    };
    Error::msg(format!("cannot reach the primary {}: {why}", spec.address()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(address: &str, mode: Option<&str>, ca: Option<&str>) -> Result<PrimarySpec> {
        let pw = Path::new("/pw");
        PrimarySpec::new(address, Some("repl"), Some(pw), mode, ca.map(PathBuf::from), None, None)
    }

    #[test]
    fn the_primary_is_named_and_tls_is_verified_unless_disabled_by_name() {
        let s = spec("db1", None, Some("/ca.pem")).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.address()), ("db1", 3306, "db1:3306".to_owned()));
        assert_eq!(s.tls.unwrap().ca, PathBuf::from("/ca.pem"));
        let s = spec("[::1]:3307", Some("verify-ca"), Some("/ca.pem")).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.address()), ("::1", 3307, "[::1]:3307".to_owned()));
        assert!(spec("127.0.0.1:4000", Some("DISABLED"), None).unwrap().tls.is_none());
        for (address, mode, ca, says) in [
            ("db1", None, None, "--ssl-ca is needed"),
            ("db1", Some("REQUIRED"), Some("/ca.pem"), "REQUIRED is refused"),
            ("db1", Some("DISABLED"), Some("/ca.pem"), "takes no --ssl-ca"),
            ("db1", Some("PREFERRED"), Some("/ca.pem"), "VERIFY_IDENTITY, VERIFY_CA or DISABLED"),
            ("db1:0", None, Some("/ca.pem"), "give HOST or HOST:PORT"),
            ("db1:x", None, Some("/ca.pem"), "give HOST or HOST:PORT"),
            ("::1", None, Some("/ca.pem"), "give HOST or HOST:PORT"),
            ("db'1", None, Some("/ca.pem"), "give HOST or HOST:PORT"),
            ("", None, Some("/ca.pem"), "give HOST or HOST:PORT"),
        ] {
            let err = spec(address, mode, ca).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::exit::USAGE, "{err}");
            assert!(err.to_string().contains(says), "{address} {mode:?}: {err}");
        }
        let none = PrimarySpec::new("db1", None, Some(Path::new("/pw")), None, Some("/ca".into()), None, None);
        assert!(none.unwrap_err().to_string().contains("--user"));
        let half = PrimarySpec::new(
            "db1",
            Some("u"),
            Some(Path::new("/pw")),
            None,
            Some("/ca".into()),
            Some("/c".into()),
            None,
        );
        assert!(half.unwrap_err().to_string().contains("go together"));
    }

    #[test]
    fn password_refusals_never_show_the_value() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        let write = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        write(b"s3cr'et\\x\r\n");
        assert_eq!(read_password(&path).unwrap().as_str(), "s3cr'et\\x");
        for inside in [&b"hunter2\nhunter3\n"[..], b"hunter2\rhunter3", b"hunter2\0x", b"hunter2\xff"] {
            write(inside);
            let err = read_password(&path).unwrap_err();
            let text = err.one_line();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(!text.contains("hunter"), "the value is shown: {text}");
            assert_eq!(err.exit_code(), crate::error::exit::USAGE);
        }
    }

    #[test]
    fn positions_are_what_a_dump_takes() {
        use coffer_mysql::meta::BinlogPosition;
        let at = |file: &str, position, gtid: Option<&str>| {
            Position::of(&BinlogPosition { file: file.into(), position, gtid: gtid.map(str::to_owned) })
        };
        let g = at("b.000001", 300, Some("0-1-5,1-2-9")).unwrap();
        assert_eq!((g.to_string(), g.clone()), ("GTID 0-1-5,1-2-9".into(), Position::Gtid("0-1-5,1-2-9".into())));
        let f = at("b.000001", 300, None).unwrap();
        assert_eq!(f.to_string(), "b.000001:300");
        // A MySQL GTID set is no MariaDB position: the file and offset then.
        let mysql = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5";
        assert_eq!(at("b.000001", 300, Some(mysql)), Some(Position::File("b.000001".into(), 300)));
        assert_eq!(at("b.000001", 300, Some("")), Some(Position::File("b.000001".into(), 300)));
        assert_eq!(at("b'; --.000001", 300, None), None);
        assert_eq!(at("b.000001", 1 << 40, None), None);
    }

    #[test]
    fn refusals_say_why_on_one_line() {
        let s = spec("db1", None, Some("/ca.pem")).unwrap();
        let server = |code, message: &str| ClientError::Server { code, state: "HY000".into(), message: message.into() };
        let say = |e| unreachable(&s, e).to_string();
        assert!(say(server(1045, "Access denied for user 'repl'@'localhost' (using password: YES)"))
            .starts_with("cannot reach the primary db1:3306: wrong user or password for repl"));
        assert!(say(server(1227, "Access denied; you need ...")).contains("lacks REPLICATION SLAVE"));
        assert!(say(ClientError::Tls("invalid peer certificate: UnknownIssuer".into()))
            .contains("not signed by the CA /ca.pem"));
        assert!(say(ClientError::Tls("invalid peer certificate: NotValidForName".into())).contains("does not name db1"));
        assert!(say(ClientError::AuthMethod("client_ed25519".into())).contains("mysql_native_password only"));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(say(ClientError::Io(refused)).starts_with("cannot reach the primary db1:3306: "));
        let from = Position::Gtid("0-1-5".into());
        let purged = "Could not find GTID state requested by slave in any binlog files. Probably ...";
        assert!(matches!(held(&s, server(1236, purged), &from), Ok(Held::Purged(w)) if w.starts_with("Could not")));
        let ahead = "Error: connecting slave requested to start from GTID 0-1-99, which is not in the master's binlog";
        assert!(matches!(held(&s, server(1236, ahead), &from), Ok(Held::Diverged(_))));
        let torn = "binlog truncated in the middle of event";
        assert!(held(&s, server(1236, torn), &from).unwrap_err().to_string().contains("from GTID 0-1-5"));
        for e in [say(server(1045, "x")), say(server(1227, "x"))] {
            assert_eq!(e.lines().count(), 1);
        }
    }
}
