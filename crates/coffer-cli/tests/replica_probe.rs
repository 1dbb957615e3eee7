//! The probe of a primary that `replica seed` runs first, seen through `catalog --primary`: a
//! real MariaDB primary that takes TLS connections only, with GTIDs and the binary log; hot
//! backups under a file:// prefix; whether the primary still has the binary log from each
//! backup's position, before and after it purges; and the refusals, one line each.

mod common;

use common::live;
use common::scenario::*;
use common::*;

/// `coffer backup --mysql` of `src` over its socket (TLS is for TCP) into `prefix`.
fn backup(fx: &Fixture, src: &Source, prefix: &str) {
    let sock = src.server.socket.display().to_string();
    let (pw, key, scratch) = (fx.s("pw"), fx.key(), fx.s("scratch"));
    let args = ["backup", "--mysql", "-S", &sock, "-u", "backup", "--password-file", &pw, "-o", prefix];
    expect(0, &[&args[..], &["--key-file", &key, "--scratch-dir", &scratch]].concat());
}

/// How `catalog --primary` reaches the primary: HOST:PORT, user, password file, TLS options.
struct Reach<'a>(&'a str, &'a str, &'a str, &'a [&'a str]);

/// `coffer catalog PREFIX --primary ...` reaching it so, with `more`: (exit code, stdout, stderr).
fn catalog(fx: &Fixture, prefix: &str, r: &Reach, more: &[&str]) -> (i32, String, String) {
    let key = fx.key();
    let args = ["catalog", prefix, "--key-file", &key, "--primary", r.0, "--user", r.1, "--password-file", r.2];
    let (code, out, err) = run(&[&args[..], r.3, more].concat());
    (code, String::from_utf8(out).unwrap(), err)
}

/// Each backup's `primary_has_binlog`, newest first.
fn has_binlog(fx: &Fixture, prefix: &str, r: &Reach) -> Vec<serde_json::Value> {
    let (code, out, err) = catalog(fx, prefix, r, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    rows.iter().map(|r| r["primary_has_binlog"].clone()).collect()
}

/// A primary in `fx` that takes TLS connections only (the certificates of `pki`'s `pki/`),
/// with a backup user, `repl`, and `sql` run.
fn tls_primary(fx: &Fixture, pki: &Fixture, sql: &str) -> Source {
    Scenario::new(fx)
        .opts(&[
            // 127.0.0.2 reaches the same server under a name its certificate does not hold.
            "--bind-address=127.0.0.1,127.0.0.2",
            &format!("--ssl-ca={}", pki.s("pki/ca.crt")),
            &format!("--ssl-cert={}", pki.s("pki/db.crt")),
            &format!("--ssl-key={}", pki.s("pki/db.key")),
            "--require-secure-transport=ON",
            "--gtid-strict-mode=ON",
        ])
        .backup_user()
        .repl()
        .sql(sql)
        .start()
}

#[test]
fn catalog_says_which_backups_the_primary_can_still_serve() {
    if !live::tools() {
        return;
    }
    let fx = Fixture::new();
    expect(0, &["tls", "generate", "--ca-dir", &fx.s("pki"), "--name", "db"]);
    expect(0, &["tls", "generate", "--ca-dir", &fx.s("other"), "--name", "db"]);
    // An account the probe cannot speak for (coffer's client has mysql_native_password only).
    let ed = "INSTALL SONAME 'auth_ed25519'; CREATE USER 'ed'@'localhost' IDENTIFIED VIA ed25519 USING PASSWORD('repl-pw'); \
              GRANT REPLICATION SLAVE ON *.* TO 'ed'@'localhost';";
    let src = tls_primary(&fx, &fx, &format!("{TWO_LOGS} {ed}"));
    let (server, port) = (&src.server, src.port);
    let prefix = format!("file://{}/", fx.path("prod").display());
    backup(&fx, &src, &prefix);
    let (at, pw, ca) = (format!("127.0.0.1:{port}"), fx.s("repl-pw"), fx.s("pki/ca.crt"));
    let good = Reach(&at, "repl", &pw, &["--ssl-ca", &ca]);

    // The primary is at the backup's very position, then past it: has, both times.
    let (code, out, err) = catalog(&fx, &prefix, &good, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().next().unwrap().ends_with("primary: has"), "{out}");
    server.sql("INSERT INTO d.t VALUES (5001, 'after the backup')");
    assert_eq!(has_binlog(&fx, &prefix, &good), [serde_json::Value::Bool(true)]);

    // The primary purges every log but its newest; a second backup is taken after.
    server.sql("FLUSH BINARY LOGS; INSERT INTO d.t VALUES (5002, 'x'); FLUSH BINARY LOGS;");
    let current = server.sql("SHOW MASTER STATUS").split('\t').next().unwrap().to_owned();
    server.sql(&format!("PURGE BINARY LOGS TO '{current}'"));
    std::thread::sleep(std::time::Duration::from_millis(1100)); // Backup names are by the second.
    backup(&fx, &src, &prefix);
    let (code, out, err) = catalog(&fx, &prefix, &good, &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with("primary: has") && lines[1].ends_with("primary: purged"), "{out}");
    assert_eq!(has_binlog(&fx, &prefix, &good), [serde_json::Value::Bool(true), false.into()]);
    let accepts = server.sql("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'");
    assert!(accepts.split('\t').nth(1).unwrap().trim() != "0", "{accepts}");

    // Refusals: one line each, nothing printed.
    fx.write_secret("bad-pw", "not-the-password\n");
    let (other, bad, bpw, at2) = (fx.s("other/ca.crt"), fx.s("bad-pw"), fx.s("pw"), format!("127.0.0.2:{port}"));
    let tls = ["--ssl-ca", ca.as_str()];
    let nobody = format!("127.0.0.1:{}", live::free_port());
    for (reach, code, says) in [
        (Reach(&at, "repl", &pw, &["--ssl-ca", &other]), 1, "its certificate is not signed by the CA"),
        (Reach(&at2, "repl", &pw, &tls), 1, "its certificate does not name 127.0.0.2"),
        (Reach(&at, "repl", &bad, &tls), 1, "wrong user or password for repl"),
        // The backup account may connect but not read the binary log.
        (Reach(&at, "backup", &bpw, &tls), 1, "lacks REPLICATION SLAVE"),
        (Reach(&at, "repl", &pw, &["--ssl-mode", "DISABLED"]), 1, "or it takes TLS connections only"),
        (Reach(&at, "repl", &pw, &["--ssl-mode", "REQUIRED", "--ssl-ca", &ca]), 2, "--ssl-mode REQUIRED is refused"),
        (Reach(&at, "repl", &pw, &["--ssl-mode", "DISABLED", "--ssl-ca", &ca]), 2, "takes no --ssl-ca"),
        (Reach(&at, "ed", &pw, &tls), 1, "authenticates by client_ed25519; coffer speaks mysql_native_password only"),
        (Reach(&nobody, "repl", &pw, &tls), 1, "cannot reach the primary 127.0.0.1"),
    ] {
        let (got, out, err) = catalog(&fx, &prefix, &reach, &[]);
        assert_eq!((got, out.as_str()), (code, ""), "{:?}: {err}", reach.3);
        assert!(err.contains(says) && err.trim_end().lines().count() == 1, "{:?}: {err}", reach.3);
        assert!(!err.contains("not-the-password") && !err.contains("repl-pw"), "{err}");
    }

    // Another server (its GTIDs behind the backups'): it never had their transactions.
    let fx2 = Fixture::new();
    let other_primary = tls_primary(&fx2, &fx, "CREATE DATABASE e;");
    let at = format!("127.0.0.1:{}", other_primary.port);
    let elsewhere = Reach(&at, "repl", &pw, &tls);
    let (code, out, err) = catalog(&fx, &prefix, &elsewhere, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().take(2).all(|l| l.ends_with("primary: diverged")), "{out}");
    assert_eq!(has_binlog(&fx, &prefix, &elsewhere), [serde_json::Value::Bool(false), false.into()]);
}
