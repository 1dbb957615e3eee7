//! The replication connection a seeded replica starts with: the `CHANGE MASTER TO` text (pure,
//! quoted exactly), and running it on the private server's session with the password in it
//! sent once, never in an error or a log.

use super::primary::{Position, PrimarySpec};
use crate::error::{Error, Result};
use coffer_mysql::client::{Client, ClientError, ResultCap};
use zeroize::Zeroizing;

/// `s` as an SQL string literal in a session with `sql_mode = NO_BACKSLASH_ESCAPES`, where a
/// quote is doubled and nothing else is special. NUL, CR and LF are refused: the server keeps
/// these values in master.info, one per line. `what` names the value in the refusal, which
/// never shows it.
pub(crate) fn literal(s: &str, what: &str) -> Result<String> {
    if s.bytes().any(|b| matches!(b, 0 | b'\n' | b'\r')) {
        return Err(Error::usage(format!("{what} holds a NUL, CR or LF character, which a replica cannot store")));
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

/// Refuses, before anything is written, what the server's CHANGE MASTER would refuse at the end:
/// a password longer than 96 characters (ERROR 1470 in 10.11, whose message quotes it), a
/// host name longer than 255, a user name longer than 128.
pub(crate) fn check_lengths(primary: &PrimarySpec, password: &str) -> Result<()> {
    let long = |what: String, max: usize| {
        Err(Error::usage(format!("{what} is longer than a replica takes ({max} characters)")))
    };
    if password.chars().count() > 96 {
        return long(format!("the password in {}", primary.password_file.display()), 96);
    }
    if primary.host.chars().count() > 255 {
        return long("the primary's host name".into(), 255);
    }
    if primary.user.chars().count() > 128 {
        return long("the replication user's name".into(), 128);
    }
    Ok(())
}

/// The `CHANGE MASTER TO` statement: the primary, its account, TLS verified (CA and host name:
/// MariaDB checks both with `MASTER_SSL_VERIFY_SERVER_CERT=1`, whose default differs by
/// version, so it is always said) or plaintext when asked for by name, and where replication
/// starts: the GTID position (`slave_pos`, set by the caller) or a file and position.
pub(crate) fn change_master(primary: &PrimarySpec, password: &str, from: &Position) -> Result<Zeroizing<String>> {
    let secret = Zeroizing::new(literal(password, &format!("the password file {}", primary.password_file.display()))?);
    let mut s = Zeroizing::new(String::with_capacity(1024));
    s.push_str(&format!(
        "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}",
        literal(&primary.host, "the primary's host")?,
        primary.port,
        literal(&primary.user, "the replication user")?,
        "",
    ));
    // Pushed, not formatted: no copy of the password outlives this statement.
    s.push_str(&secret);
    match &primary.tls {
        Some(tls) => {
            let path = |p: &std::path::Path, what: &str| -> Result<String> {
                let abs = std::path::absolute(p).map_err(Error::from)?;
                let text = abs.to_str().ok_or_else(|| Error::usage(format!("{what} {}: not UTF-8", p.display())))?;
                literal(text, what)
            };
            s.push_str(&format!(", MASTER_SSL=1, MASTER_SSL_CA={}", path(&tls.ca, "--ssl-ca")?));
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                s.push_str(&format!(
                    ", MASTER_SSL_CERT={}, MASTER_SSL_KEY={}",
                    path(cert, "--ssl-cert")?,
                    path(key, "--ssl-key")?
                ));
            }
            s.push_str(", MASTER_SSL_VERIFY_SERVER_CERT=1");
        }
        None => s.push_str(", MASTER_SSL=0, MASTER_SSL_VERIFY_SERVER_CERT=0"),
    }
    match from {
        Position::Gtid(_) => s.push_str(", MASTER_USE_GTID=slave_pos"),
        Position::File(file, pos) => {
            if !coffer_mysql::meta::is_binlog_file_name(file) {
                return Err(Error::msg(format!("{file:?} is not a binary log file name")));
            }
            s.push_str(&format!(", MASTER_USE_GTID=no, MASTER_LOG_FILE='{file}', MASTER_LOG_POS={pos}"));
        }
    }
    s.push_str(", MASTER_CONNECT_RETRY=10, MASTER_HEARTBEAT_PERIOD=5");
    Ok(s)
}

/// Configures replication on the private server's session `c`: every connection the backup
/// carried is removed, then the one to the primary is set. The server is never started as a
/// replica here (it has no network).
pub(crate) fn configure(c: &mut Client, primary: &PrimarySpec, password: &str, from: &Position) -> Result<()> {
    let statement = change_master(primary, password, from)?;
    let run = |c: &mut Client, q: &str, what: &str| -> Result<Vec<coffer_mysql::client::Row>> {
        c.query_capped(q, ResultCap::FEW).map_err(|e| refused(e, password, what))
    };
    run(c, "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'", "cannot configure replication")?;
    for name in connection_names(c)? {
        run(c, &format!("RESET SLAVE '{name}' ALL"), "cannot remove the backup's replication connection")?;
    }
    run(c, "RESET SLAVE ALL", "cannot remove the backup's replication connection")?;
    c.query_capped(&statement, ResultCap::FEW).map_err(|e| match e {
        // The server's message may quote the statement near an error: only its code is said.
        ClientError::Server { code, .. } => Error::msg(format!(
            "cannot configure replication (CHANGE MASTER TO ..., the password elided): the server says ERROR {code}"
        )),
        e => refused(e, password, "cannot configure replication"),
    })?;
    Ok(())
}

/// The named connections (multi-source) the backup's server had; names other than plain words
/// are refused rather than quoted into SQL.
fn connection_names(c: &mut Client) -> Result<Vec<String>> {
    let rows = c
        .query_capped("SHOW ALL SLAVES STATUS", ResultCap::FEW)
        .map_err(|e| Error::other(e).context("cannot list the backup's replication connections"))?;
    let mut names = Vec::new();
    for name in rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).filter(|n| !n.is_empty()) {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') || name.len() > 64 {
            crate::bail!(
                "the backup has a replication connection named {}: remove it by hand",
                crate::text::escape(name.as_bytes())
            );
        }
        names.push(name);
    }
    Ok(names)
}

/// The server's refusal as one line, without the statement's words if they could show the
/// password (a syntax error quotes the text near it).
fn refused(e: ClientError, password: &str, what: &str) -> Error {
    let said = match e {
        ClientError::Server { code, message, .. } if !password.is_empty() && message.contains(password) => {
            format!("the server says: ERROR {code} (its message quotes the statement, elided)")
        }
        e => e.to_string(),
    };
    Error::msg(format!("{what}: {said}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::replica::primary::PrimaryTls;
    use std::path::PathBuf;

    fn primary(tls: bool) -> PrimarySpec {
        PrimarySpec {
            host: "db1.example".into(),
            port: 3307,
            user: "re'pl".into(),
            password_file: PathBuf::from("/etc/coffer/repl.pw"),
            tls: tls.then(|| PrimaryTls { ca: "/etc/ssl/ca.pem".into(), cert: None, key: None }),
        }
    }

    #[test]
    fn quotes_are_doubled_and_backslashes_stay_as_they_are() {
        assert_eq!(literal(r"p'w\x", "pw").unwrap(), r"'p''w\x'");
        assert_eq!(literal("é'", "pw").unwrap(), "'é'''");
        for bad in ["a\nb", "a\rb", "a\0b"] {
            let e = literal(bad, "the password file /x").unwrap_err().one_line();
            assert!(e.contains("the password file /x") && !e.contains(bad), "{e}");
        }
    }

    #[test]
    fn the_statement_verifies_tls_and_starts_where_asked() {
        let s = change_master(&primary(true), r"s'e\c", &Position::Gtid("0-1-5".into())).unwrap();
        assert_eq!(
            s.as_str(),
            r"CHANGE MASTER TO MASTER_HOST='db1.example', MASTER_PORT=3307, MASTER_USER='re''pl', MASTER_PASSWORD='s''e\c', MASTER_SSL=1, MASTER_SSL_CA='/etc/ssl/ca.pem', MASTER_SSL_VERIFY_SERVER_CERT=1, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=10, MASTER_HEARTBEAT_PERIOD=5"
        );
        let s = change_master(&primary(false), "pw", &Position::File("mb.000007".into(), 1234)).unwrap().to_string();
        assert!(s.contains("MASTER_SSL=0, MASTER_SSL_VERIFY_SERVER_CERT=0, MASTER_USE_GTID=no, MASTER_LOG_FILE='mb.000007', MASTER_LOG_POS=1234"), "{s}");
        assert!(change_master(&primary(true), "pw", &Position::File("x'.1".into(), 4)).is_err());
    }

    #[test]
    fn what_the_server_would_refuse_at_the_end_is_refused_first() {
        let pw = "x".repeat(97);
        let e = check_lengths(&primary(true), &pw).unwrap_err().one_line();
        assert!(e.contains("/etc/coffer/repl.pw") && e.contains("96") && !e.contains(&pw), "{e}");
        assert!(check_lengths(&primary(true), &"é".repeat(96)).is_ok());
    }

    #[test]
    fn a_refusal_never_shows_the_password() {
        let e =
            ClientError::Server { code: 1064, state: "42000".into(), message: "near 'hunter2', MASTER_SSL=1".into() };
        let line = refused(e, "hunter2", "cannot configure replication").one_line();
        assert!(!line.contains("hunter2") && line.contains("1064"), "{line}");
    }
}
