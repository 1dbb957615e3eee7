//! `config check`: whether what a profile names is there: files readable, secrets that open,
//! stores that answer, a server that answers.

use super::Entry;
use crate::keys::KeySources;
use crate::{Env, Error, Result, ServerOptions};

/// Options of a profile that name a file to read.
const FILES: &[&str] = &[
    "key-file",
    "passphrase-file",
    "identity",
    "keyring",
    "keyring-key-file",
    "keyring-passphrase-file",
    "password-file",
    "ssl-ca",
    "ssl-cert",
    "ssl-key",
    "defaults-file",
    "signing-key",
    "cert",
    "key",
    "ca",
];

/// One thing checked of a profile.
///
/// Serialized as `config check --json` shows it: `check`, `detail`, `ok`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// What was checked (`key-file /etc/coffer/backup.key`, `repository s3://b/p/`).
    #[serde(rename = "check")]
    pub what: String,
    /// What was found, or why it failed (one line).
    pub detail: String,
    /// Whether it is there.
    pub ok: bool,
}

impl Finding {
    fn of<T>(what: String, result: Result<T>, detail: impl FnOnce(T) -> String) -> Self {
        let ok = result.is_ok();
        Finding { what, ok, detail: result.map_or_else(|e| e.one_line(), detail) }
    }
}

/// What a profile is checked for, besides its own entries: what a run under it would use.
#[derive(Debug, Default)]
pub struct CheckSpec<'a> {
    /// The profile's entries.
    pub entries: &'a [Entry],
    /// The secrets a restore under the profile opens (without a terminal prompt), or why they
    /// could not be gathered (one line).
    pub keys: Option<std::result::Result<KeySources, String>>,
    /// The server `binlog archive` connects to under the profile, if it names one.
    pub server: Option<ServerOptions>,
    /// Say nothing of a profile that names nothing to check.
    pub quiet: bool,
}

/// Checks what the profile names: each file it names is readable, its secrets open, its
/// repository and binary log archive can be listed, its server answers (not over TLS).
pub fn check(spec: &CheckSpec, env: &Env) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in spec.entries.iter().filter(|e| FILES.contains(&e.key.as_str())) {
        for p in e.value.texts() {
            let read = std::fs::File::open(&p).and_then(|mut f| std::io::Read::read(&mut f, &mut [0u8; 1]));
            out.push(Finding {
                what: format!("{} {p}", e.key),
                ok: read.is_ok(),
                detail: read.map_or_else(|e| format!("cannot read: {e}"), |_| "readable".into()),
            });
        }
    }
    match &spec.keys {
        Some(Ok(sources)) => {
            let named = sources.key_files.len()
                + sources.identities.len()
                + sources.passphrase_files.len()
                + usize::from(sources.key_hex.is_some() || sources.key_command.is_some() || sources.keyring.is_some());
            if named > 0 {
                let opened = crate::keys::unlocks(sources, env);
                out.push(Finding::of("secrets".into(), opened, |u| format!("{} read", u.len())));
            }
        }
        Some(Err(e)) => out.push(Finding { what: "secrets".into(), ok: false, detail: e.clone() }),
        None => {}
    }
    let store = |key: &str| spec.entries.iter().find(|e| e.key == key && e.section.is_empty())?.value.texts().pop();
    if let Some(url) = store("repository") {
        let listed = crate::repo::backups(&url, env);
        out.push(Finding::of(format!("repository {url}"), listed, |b| {
            format!("reachable, {} backup{}", b.len(), if b.len() == 1 { "" } else { "s" })
        }));
    }
    if let Some(url) = store("binlogs") {
        let listed = crate::repo::archive::segments(&url, env);
        out.push(Finding::of(format!("binlogs {url}"), listed, |s| {
            format!("reachable, {} segment{}", s.len(), if s.len() == 1 { "" } else { "s" })
        }));
    }
    if let Some(f) = spec.server.as_ref().and_then(server) {
        out.push(f);
    }
    if out.is_empty() && !spec.quiet {
        out.push(Finding { what: "profile".into(), ok: true, detail: "names no file, secret, store or server".into() });
    }
    out
}

/// Connects to the server, if the options name one.
fn server(options: &ServerOptions) -> Option<Finding> {
    if options.socket.is_none() && options.host.is_none() {
        return None;
    }
    let shown = options.socket.as_ref().map_or_else(
        || format!("{}:{}", options.host.clone().unwrap_or_default(), options.port.unwrap_or(3306)),
        |s| s.display().to_string(),
    );
    if options.tls.is_some() {
        return Some(Finding { what: format!("server {shown}"), ok: true, detail: "not checked (TLS)".into() });
    }
    Some(Finding::of(format!("server {shown}"), connect(options), |v| format!("answers ({v})")))
}

/// The server's version, asked over a plain connection.
fn connect(options: &ServerOptions) -> Result<String> {
    use coffer_mysql::client::{Client, Target};
    let options = ServerOptions {
        socket: options.socket.clone(),
        host: options.host.clone(),
        port: options.port,
        user: options.user.clone(),
        password_file: options.password_file.clone(),
        ..Default::default()
    };
    let conn = crate::source::connection(&options)?;
    let target = match (&options.socket, &options.host) {
        (Some(s), _) => Target::Socket(s.clone()),
        (None, Some(h)) => Target::Tcp { host: h.clone(), port: options.port.unwrap_or(3306) },
        _ => unreachable!("checked by the caller"),
    };
    let user = conn.user.clone().unwrap_or_else(|| "root".into());
    let password = conn.password.clone().unwrap_or_default();
    let mut client = Client::connect(&target, &user, password.as_bytes(), std::time::Duration::from_secs(10), None)
        .map_err(|e| Error::other(e).context("cannot connect"))?;
    let rows = client.query("SELECT VERSION()").map_err(|e| Error::other(e).context("cannot query"))?;
    Ok(rows.first().and_then(|r| r.first()).cloned().flatten().unwrap_or_default())
}
