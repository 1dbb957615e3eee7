//! `--start-with`: the replica started by the user's own command, then watched until it has
//! applied everything the primary had when the seed ended, through the `mariadb` client on the
//! replica's socket (as root, by the socket's credentials: the account the backup carried).

use crate::error::{Context, Error, Result};
use crate::Env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How the seeded replica is started and watched.
#[derive(Debug, Clone)]
pub struct StartSpec {
    /// Run with `/bin/sh -c` once the datadir is in place (e.g. `systemctl start mariadb`).
    pub command: String,
    /// The replica's socket.
    pub socket: PathBuf,
    /// How long to wait for the replica to catch up.
    pub timeout: Duration,
}

impl StartSpec {
    /// Run `command`, then wait up to `timeout` seconds for the replica at `socket`.
    pub fn new(command: &str, socket: &Path, timeout: u64) -> Self {
        StartSpec { command: command.to_owned(), socket: socket.to_owned(), timeout: Duration::from_secs(timeout) }
    }
}

/// What the wait saw.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Waited {
    /// The primary's `gtid_binlog_pos` when the seed ended: the goal.
    pub target_gtid: String,
    /// The replica's `gtid_slave_pos` at the end.
    pub gtid_slave_pos: String,
    /// Seconds from the start command to caught up.
    pub seconds: f64,
}

/// One query on the replica, its rows tab-separated (`--batch`), the first line the columns'
/// names.
fn query(client: &Path, socket: &Path, sql: &str) -> Result<String> {
    let mut cmd = Command::new(client);
    coffer_mysql::engine::program_env(&mut cmd);
    let out = cmd
        .args(["--no-defaults", "--batch", "--user=root", "--connect-timeout=10"])
        .arg(format!("--socket={}", socket.display()))
        .args(["-e", sql])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", client.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        crate::bail!("{}", crate::text::escape(err.lines().next().unwrap_or("the client failed").trim().as_bytes()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `SHOW SLAVE STATUS` as (column, value) pairs; empty when replication is not configured.
fn slave_status(client: &Path, socket: &Path) -> Result<Vec<(String, String)>> {
    let text = query(client, socket, "SHOW SLAVE STATUS")?;
    let mut lines = text.lines();
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return Ok(Vec::new()) };
    Ok(names.split('\t').map(str::to_owned).zip(values.split('\t').map(str::to_owned)).collect())
}

/// Transactions from `at` to `target`, domain by domain: exact where one server writes each
/// domain, an estimate otherwise.
fn behind(target: &str, at: &str) -> u64 {
    let (target, at) = (crate::repo::recovery::parse_gtids(target), crate::repo::recovery::parse_gtids(at));
    let (Some(target), Some(at)) = (target, at) else { return 0 };
    target.iter().map(|(d, (_, n))| n.saturating_sub(at.get(d).map_or(0, |(_, m)| *m))).sum()
}

fn field<'a>(status: &'a [(String, String)], name: &str) -> &'a str {
    status.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// A field as messages show it: its bytes are the server's (an SQL error quotes statements of
/// the log, which applications write).
fn shown(status: &[(String, String)], name: &str) -> String {
    crate::text::escape(field(status, name).as_bytes())
}

/// Runs the start command, then waits (up to 120 s) until the replica answers on its socket.
fn start(spec: &StartSpec, client: &Path) -> Result<()> {
    let status = Command::new("/bin/sh")
        .args(["-c", &spec.command])
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {:?}", spec.command))?;
    if !status.success() {
        crate::bail!("its start command {:?} failed ({status})", spec.command);
    }
    let up = Instant::now();
    while let Err(e) = query(client, &spec.socket, "SELECT 1") {
        if up.elapsed() > Duration::from_secs(120) {
            crate::bail!("it did not answer on {} in 120 s: {}", spec.socket.display(), e.one_line());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// Runs the start command, waits for the replica's socket, then until its `gtid_slave_pos`
/// reaches `target` (the primary's `gtid_binlog_pos`), saying the lag as it goes. A thread
/// that stops on an error, or one that never starts, ends the wait with the server's words.
pub(crate) fn start_and_wait(
    spec: &StartSpec,
    datadir: &Path,
    (target, primary_id): (&str, u32),
    env: &Env,
) -> Result<Waited> {
    let seeded = |why: String| Error::msg(format!("the replica is seeded in {}; {why}", datadir.display()));
    let client = crate::server::private::program(&["mariadb", "mysql"], "mariadb-client")?;
    let started = Instant::now();
    start(spec, &client).map_err(|e| seeded(e.one_line()))?;
    // A replica with its primary's server id skips every event as its own, without an error.
    let id = query(&client, &spec.socket, "SELECT @@server_id").map_err(|e| seeded(e.one_line()))?;
    if id.lines().nth(1).map(str::trim) == Some(primary_id.to_string().as_str()) {
        return Err(seeded(format!(
            "it runs with server_id {primary_id}, the primary's: it would skip the primary's events as its own (set another server_id in its configuration)"
        )));
    }
    if target.is_empty() || !coffer_mysql::meta::is_mariadb_gtid_list(target) {
        return Err(seeded(format!(
            "the primary has no GTID position ({target:?}) to wait for: watch SHOW SLAVE STATUS on the replica"
        )));
    }
    let wait = format!("SELECT MASTER_GTID_WAIT('{target}', 5)");
    let mut io_failing = 0;
    loop {
        let answer = query(&client, &spec.socket, &wait).map_err(|e| seeded(e.one_line()))?;
        let reached = answer.lines().nth(1).map(str::trim) == Some("0");
        let s = slave_status(&client, &spec.socket).map_err(|e| seeded(e.one_line()))?;
        let (io, sql) = (field(&s, "Slave_IO_Running"), field(&s, "Slave_SQL_Running"));
        let pos = query(&client, &spec.socket, "SELECT @@gtid_slave_pos").map_err(|e| seeded(e.one_line()))?;
        let at = crate::text::escape(pos.lines().nth(1).unwrap_or_default().trim().as_bytes());
        // Reached is not enough (an idle primary is reached at once): both threads must run,
        // the I/O thread connected, without an error.
        if reached && io == "Yes" && sql == "Yes" && field(&s, "Last_IO_Errno") == "0" {
            return Ok(Waited {
                target_gtid: target.into(),
                gtid_slave_pos: at,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        if field(&s, "Last_SQL_Errno") != "0" && !field(&s, "Last_SQL_Errno").is_empty() {
            return Err(seeded(format!("its SQL thread stopped: {}", shown(&s, "Last_SQL_Error"))));
        }
        let io_errno = field(&s, "Last_IO_Errno");
        io_failing = if io != "Yes" && !io_errno.is_empty() && io_errno != "0" { io_failing + 1 } else { 0 };
        if io_failing >= 3 {
            // MariaDB says an unknown CA as "SSL connection error: error:00000000:lib(0)...".
            let hint = if io_errno == "2026" {
                " (TLS: is its --ssl-ca the CA that signs the primary's certificate, and does that name the host?)"
            } else {
                ""
            };
            return Err(seeded(format!("it cannot replicate from the primary: {}{hint}", shown(&s, "Last_IO_Error"))));
        }
        if s.is_empty() || (io == "No" && sql == "No") {
            return Err(seeded(
                "replication did not start (SHOW SLAVE STATUS: not running, no error): see the server's error log"
                    .into(),
            ));
        }
        if started.elapsed() > spec.timeout {
            return Err(seeded(format!(
                "it did not catch up in {} s (Seconds_Behind_Master {}, at {})",
                spec.timeout.as_secs(),
                field(&s, "Seconds_Behind_Master"),
                at
            )));
        }
        env.report.say(&format!(
            "replica catching up: {} s and about {} transactions behind the primary, at {} of {target}",
            field(&s, "Seconds_Behind_Master"),
            behind(target, &at),
            at
        ));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn transactions_behind_are_summed_over_domains() {
        assert_eq!(super::behind("0-1-120,1-2-7", "0-1-100"), 27);
        assert_eq!(super::behind("0-1-120", "0-1-130"), 0);
        assert_eq!(super::behind("0-1-5", "nonsense"), 0);
    }
}
