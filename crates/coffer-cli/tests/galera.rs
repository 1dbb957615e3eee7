//! A real two-node MariaDB Galera cluster (galera-4 from Debian's packages) on 127.0.0.1 with
//! its own ports: node 2 joins through contrib/galera/wsrep_sst_coffer, reaches Synced, and
//! holds node 1's tables. A joiner whose certificate node 1 does not trust never joins.

mod common;

use common::mariadb::which;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";

fn available() -> bool {
    let found = Path::new(PROVIDER).exists()
        && ["mariadbd", "mariadb-install-db", "mariadb", "mariadb-backup", "wsrep_sst_common"]
            .iter()
            .all(|b| which(b).is_some());
    if !found {
        assert!(
            std::env::var_os("COFFER_REQUIRE_MARIADB").is_none(),
            "galera-4, mariadb-server and mariadb-backup are required"
        );
        eprintln!("skipped: galera-4 or MariaDB is not installed");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map(|u| u.name).unwrap_or_else(|| "root".into())
}

struct Node {
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    fn sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(which("mariadb").unwrap())
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Waits for wsrep_local_state_comment = Synced; the error log if the server dies first.
    fn synced(&mut self, within: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(s) = self.sql("SHOW STATUS LIKE 'wsrep_local_state_comment'") {
                if s.contains("Synced") {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("mariadbd exited ({status}): {}", self.log()));
            }
            if started.elapsed() > within {
                return Err(format!("not synced after {within:?}: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new(which("mariadb-admin").unwrap())
                .arg(format!("--socket={}", self.socket().display()))
                .args(["-uroot", "shutdown"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none() && started.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Installs a datadir and starts a Galera node on it. `gcomm` is the cluster address list.
fn start_node(fx: &Fixture, name: &str, gcomm: &str, own: u16, bootstrap: bool, pki: (&str, &str)) -> Node {
    let dir = fx.path(name);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = Command::new(which("mariadb-install-db").unwrap())
        .args(["--no-defaults", &format!("--datadir={}", data.display()), &format!("--user={}", user())])
        .args(["--auth-root-authentication-method=normal", "--skip-test-db", &format!("--tmpdir={}", dir.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ist, sst, port) = (free_port(), free_port(), free_port());
    let (certdir, node) = pki;
    let cnf = format!(
        "[mysqld]\ndatadir={data}\nsocket={dir}/mysqld.sock\npid-file={dir}/mysqld.pid\nlog-error={dir}/error.log\n\
         tmpdir={dir}\nport={port}\nbind-address=127.0.0.1\nuser={user}\nbinlog_format=ROW\ndefault_storage_engine=InnoDB\n\
         innodb_autoinc_lock_mode=2\ninnodb_buffer_pool_size=64M\ninnodb_log_file_size=48M\n\
         wsrep_on=ON\nwsrep_provider={PROVIDER}\nwsrep_cluster_name=coffer-test\nwsrep_cluster_address={gcomm}\n\
         wsrep_node_address=127.0.0.1\nwsrep_node_name={name}\n\
         wsrep_provider_options=\"gmcast.listen_addr=tcp://127.0.0.1:{own};ist.recv_addr=127.0.0.1:{ist};gcache.size=32M\"\n\
         wsrep_sst_receive_address=127.0.0.1:{sst}\nwsrep_sst_method=coffer\nwsrep_sst_auth=root:\n\
         [sst]\ntcert={certdir}/{node}.crt\ntkey={certdir}/{node}.key\ntca={ca}\n",
        data = data.display(),
        dir = dir.display(),
        user = user(),
        ca = fx.s("pki/ca.crt"),
    );
    let cnf_path = dir.join("my.cnf");
    std::fs::write(&cnf_path, cnf).unwrap();
    // The SST script and coffer on the server's PATH.
    let bin = fx.path("bin");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new(which("mariadbd").unwrap());
    cmd.arg(format!("--defaults-file={}", cnf_path.display()))
        .env("PATH", path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if bootstrap {
        cmd.arg("--wsrep-new-cluster");
    }
    Node { dir, child: Some(cmd.spawn().unwrap()) }
}

fn setup(fx: &Fixture) {
    let bin = fx.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/galera/wsrep_sst_coffer");
    std::os::unix::fs::symlink(script.canonicalize().unwrap(), bin.join("wsrep_sst_coffer")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_coffer"), bin.join("coffer")).unwrap();
    for n in ["node1", "node2"] {
        expect(0, &["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", n, "-q"]);
    }
    expect(0, &["tls", "generate", "--ca-dir", &fx.s("other"), "--name", "stranger", "-q"]);
}

#[test]
fn a_joiner_syncs_through_coffer_and_a_stranger_never_joins() {
    if !available() {
        return;
    }
    let fx = Fixture::new();
    setup(&fx);
    let (g1, g2, g3) = (free_port(), free_port(), free_port());
    let pki = fx.s("pki");
    let mut node1 = start_node(&fx, "node1", &format!("gcomm://127.0.0.1:{g1}"), g1, true, (&pki, "node1"));
    node1.synced(Duration::from_secs(60)).unwrap();
    node1
        .sql(
            "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(200)); \
             INSERT INTO app.t (v) SELECT CONCAT('row ', seq) FROM app.seq_1_to_20000;",
        )
        .unwrap();
    let mut node2 =
        start_node(&fx, "node2", &format!("gcomm://127.0.0.1:{g1},127.0.0.1:{g2}"), g2, false, (&pki, "node2"));
    node2.synced(Duration::from_secs(120)).unwrap();
    let sum = "CHECKSUM TABLE app.t";
    assert_eq!(node2.sql(sum).unwrap(), node1.sql(sum).unwrap());
    assert!(node2.log().contains("coffer"), "the SST went through coffer: {}", node2.log());
    // Replication works both ways afterwards.
    node2.sql("INSERT INTO app.t (v) VALUES ('from node2')").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(node1.sql(sum).unwrap(), node2.sql(sum).unwrap());

    // A joiner whose certificate another CA signed: the SST fails, the node never joins.
    let other = fx.s("other");
    let mut node3 =
        start_node(&fx, "node3", &format!("gcomm://127.0.0.1:{g1},127.0.0.1:{g3}"), g3, false, (&other, "stranger"));
    let err = node3.synced(Duration::from_secs(90)).unwrap_err();
    assert!(err.contains("SST") || err.contains("coffer"), "{err}");
    // Both ends say why, in one line each: the joiner was refused, the donor saw a stranger.
    assert!(
        node3.log().contains("coffer SST failed on the joiner") && node3.log().contains("refused our certificate"),
        "{}",
        node3.log()
    );
    let started = Instant::now();
    while !node1.log().contains("not signed by our CA") && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        node1.log().contains("coffer SST failed on the donor") && node1.log().contains("not signed by our CA"),
        "{}",
        node1.log()
    );
    drop(node3);
    drop(node2);
    drop(node1);
}
