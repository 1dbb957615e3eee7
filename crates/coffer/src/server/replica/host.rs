//! The replica's own configuration, as its service will read it (`my_print_defaults`), checked
//! before anything is written: a replica whose server id is its primary's skips every event as
//! its own, without an error.

use crate::error::{Context, Result};
use crate::Env;
use std::path::Path;
use std::process::{Command, Stdio};

/// What the replica's configuration says of replication.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplicaConfig {
    pub server_id: Option<u32>,
    pub skip_slave_start: bool,
}

/// Reads the options the server groups of `file` give (the last of an option wins, as the
/// server takes them).
pub(crate) fn read(file: &Path) -> Result<ReplicaConfig> {
    let tool = crate::server::private::program(&["my_print_defaults", "mariadb-print-defaults"], "mariadb-server")?;
    let out = Command::new(&tool)
        .arg(format!("--defaults-file={}", file.display()))
        .args(["mysqld", "server", "mariadb", "mariadbd"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", tool.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        crate::bail!("{}: {}", file.display(), err.lines().next().unwrap_or("not an option file").trim());
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

fn parse(options: &str) -> ReplicaConfig {
    let mut c = ReplicaConfig::default();
    for line in options.lines() {
        let line = line.trim().replace('-', "_");
        if let Some(id) = line.strip_prefix("__server_id=") {
            c.server_id = id.trim().parse().ok();
        } else if line == "__skip_slave_start" || line == "__skip_slave_start=1" || line == "__skip_slave_start=ON" {
            c.skip_slave_start = true;
        }
    }
    c
}

/// Refuses a replica configuration without a server id of its own (the server's default, 1, is
/// most primaries' too) or with `primary_id`; warns where the replica will not start
/// replicating by itself.
pub(crate) fn check(file: &Path, primary_id: u32, env: &Env) -> Result<()> {
    let c = read(file)?;
    match c.server_id {
        None => crate::bail!(
            "{} sets no server_id for the replica: its default, 1, is the primary's unless set apart; set one",
            file.display()
        ),
        Some(id) if id == primary_id => crate::bail!(
            "{} gives the replica server_id {id}, the primary's: it would skip the primary's events as its own",
            file.display()
        ),
        Some(_) => {}
    }
    if c.skip_slave_start {
        env.report.warn(&format!(
            "{} sets skip-slave-start: the replica will not replicate until START SLAVE is run",
            file.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_the_server_takes_are_read() {
        let c = parse("--server_id=7\n--skip-slave-start\n--socket=/run/x.sock\n--server-id=9\n");
        assert_eq!(c, ReplicaConfig { server_id: Some(9), skip_slave_start: true });
        assert_eq!(parse("--port=3306\n"), ReplicaConfig::default());
    }
}
