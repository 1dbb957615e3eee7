//! STUB, replaced by the probe helper's file: how coffer reaches the primary.

use crate::error::{Error, Result};
use coffer_mysql::client::{Client, ResultCap, Target};
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// How coffer and the replica reach the primary.
#[derive(Debug, Clone)]
pub struct PrimarySpec {
    /// Its host name or address, as its certificate names it.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The replication account.
    pub user: String,
    /// A file holding its password.
    pub password_file: PathBuf,
    /// TLS, verified; `None`: plaintext, asked for by name.
    pub tls: Option<PrimaryTls>,
}

/// The files of a verified TLS connection to the primary.
#[derive(Debug, Clone)]
pub struct PrimaryTls {
    /// The CA that signs the primary's certificate.
    pub ca: PathBuf,
    /// The replica's own certificate and key, for primaries that ask for one.
    pub cert: Option<PathBuf>,
    /// Its key.
    pub key: Option<PathBuf>,
}

/// Where replication starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    Gtid(String),
    File(String, u32),
}

/// What the primary says of itself.
#[derive(Debug, Clone)]
pub(crate) struct About {
    pub version: String,
    pub server_id: u32,
    pub gtid_binlog_pos: String,
}

/// Whether the primary still has the log from a position.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(dead_code)] // STUB
pub(crate) enum Held {
    Yes,
    Purged(String),
}

/// A session with the primary.
pub(crate) struct Primary {
    spec: PrimarySpec,
    password: Zeroizing<String>,
    client: Client,
}

impl Primary {
    pub(crate) fn connect(spec: &PrimarySpec) -> Result<Primary> {
        let bytes = crate::keys::read_secret(&spec.password_file, "password file", false)?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| Error::msg("the password file is not UTF-8"))?;
        let password = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned());
        let client = Self::session(spec, &password)?;
        Ok(Primary { spec: spec.clone(), password, client })
    }

    fn session(spec: &PrimarySpec, password: &str) -> Result<Client> {
        let tls = match &spec.tls {
            Some(t) => {
                let ours = t.cert.as_deref().zip(t.key.as_deref());
                let config = coffer_net::tls::db_client_config(coffer_net::tls::DbVerify::Identity, Some(&t.ca), ours)
                    .map_err(Error::other)?;
                Some(coffer_mysql::client::Tls { config, host: spec.host.clone() })
            }
            None => None,
        };
        let target = Target::Tcp { host: spec.host.clone(), port: spec.port };
        Client::connect(&target, &spec.user, password.as_bytes(), Duration::from_secs(30), tls.as_ref())
            .map_err(|e| Error::msg(format!("cannot reach the primary {}:{}: {e}", spec.host, spec.port)))
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    pub(crate) fn about(&mut self) -> Result<About> {
        let rows = self
            .client
            .query_capped("SELECT @@version, @@server_id, @@gtid_binlog_pos", ResultCap::FEW)
            .map_err(Error::other)?;
        let row = rows.into_iter().next().unwrap_or_default();
        let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        Ok(About { version: get(0), server_id: get(1).parse().unwrap_or(0), gtid_binlog_pos: get(2) })
    }

    pub(crate) fn holds(&self, _from: &Position) -> Result<Held> {
        let _ = &self.spec;
        Ok(Held::Yes)
    }
}
