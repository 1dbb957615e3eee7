//! Incremental and differential backups of a real MariaDB server (Debian's packages): a chain
//! taken while sysbench writes, with DDL of every kind between links (and an encrypted table
//! created and renamed); each restored with --prepare through its whole chain, started, its
//! tables checked, and caught up to the source by replaying the source's binary log from the
//! coordinates that backup recorded. Broken chains are refused before anything is written;
//! a full backup is taken instead, with the reason, when no incremental can be.

mod common;

use common::live::*;
use common::mariadb::{self, Server};
use common::*;
use std::path::Path;

/// The DDL tables' names, before and after the DDL between incrementals 1 and 2.
const DDL_BEFORE: &str = "CREATE DATABASE ddl; \
    CREATE TABLE ddl.t_drop (id INT PRIMARY KEY, v TEXT); \
    CREATE TABLE ddl.t_rename (id INT PRIMARY KEY, v TEXT); \
    CREATE TABLE ddl.t_trunc (id INT PRIMARY KEY, v TEXT); \
    CREATE TABLE ddl.t_inplace (id INT PRIMARY KEY, v TEXT); \
    CREATE TABLE ddl.t_instant (id INT PRIMARY KEY, v TEXT); \
    CREATE TABLE ddl.t_opt (id INT PRIMARY KEY, v TEXT); \
    CREATE TABLE ddl.enc (id INT PRIMARY KEY, v TEXT) ENCRYPTED=YES ENCRYPTION_KEY_ID=2; \
    INSERT INTO ddl.t_drop SELECT seq, REPEAT('d', 200) FROM sbtest.seq_1_to_2000; \
    INSERT INTO ddl.t_rename SELECT seq, REPEAT('r', 200) FROM sbtest.seq_1_to_2000; \
    INSERT INTO ddl.t_trunc SELECT seq, REPEAT('t', 200) FROM sbtest.seq_1_to_2000; \
    INSERT INTO ddl.t_inplace SELECT seq, REPEAT('i', 200) FROM sbtest.seq_1_to_2000; \
    INSERT INTO ddl.t_instant SELECT seq, REPEAT('s', 200) FROM sbtest.seq_1_to_2000; \
    INSERT INTO ddl.t_opt SELECT seq, REPEAT('o', 200) FROM sbtest.seq_1_to_2000; \
    INSERT INTO ddl.enc SELECT seq, REPEAT('e', 200) FROM sbtest.seq_1_to_2000;";

const DDL_BETWEEN: &str = "CREATE TABLE ddl.t_new (id INT PRIMARY KEY, v TEXT); \
    INSERT INTO ddl.t_new SELECT seq, REPEAT('n', 200) FROM sbtest.seq_1_to_3000; \
    DROP TABLE ddl.t_drop; \
    RENAME TABLE ddl.t_rename TO ddl.t_renamed; \
    TRUNCATE TABLE ddl.t_trunc; INSERT INTO ddl.t_trunc VALUES (1, 'after truncate'); \
    ALTER TABLE ddl.t_inplace ADD INDEX iv (v(20)), ALGORITHM=INPLACE; \
    ALTER TABLE ddl.t_instant ADD COLUMN extra INT DEFAULT 7, ALGORITHM=INSTANT; \
    DELETE FROM ddl.t_opt WHERE id % 2 = 0; OPTIMIZE TABLE ddl.t_opt; \
    RENAME TABLE ddl.enc TO ddl.enc_renamed; \
    CREATE TABLE ddl.enc2 (id INT PRIMARY KEY, v TEXT) ENCRYPTED=YES; \
    INSERT INTO ddl.enc2 SELECT seq, REPEAT('x', 200) FROM sbtest.seq_1_to_1000;";

/// Every table of the source that the checks compare.
fn all_tables(server: &Server) -> Vec<String> {
    let list = server.sql(
        "SELECT CONCAT(table_schema, '.', table_name) FROM information_schema.tables \
         WHERE table_schema IN ('sbtest', 'ddl') AND table_type = 'BASE TABLE' ORDER BY 1",
    );
    list.lines().map(str::to_owned).collect()
}

fn chain_backup(fx: &Fixture, port: u16, image: &str, extra: &[&str]) -> String {
    let mut args = backup_args(fx, port, image);
    args.extend(extra.iter().map(|s| s.to_string()));
    coffer_ok(&args)
}

fn info(fx: &Fixture, image: &str) -> serde_json::Value {
    let out = run(&["info", image, "--json", "--key-file", &fx.key()]);
    assert_eq!(out.0, 0, "{}", out.2);
    serde_json::from_slice(&out.1).unwrap()
}

/// Restores `image` with --prepare (its whole chain), starts a server on it, checks every table,
/// replays the source's binary log from the backup's coordinates, and compares checksums.
fn restore_check_replay(fx: &Fixture, src: &Server, image: &str, dir: &str, server_opts: &[String]) -> String {
    let data = fx.path(dir).join("data");
    std::fs::create_dir_all(fx.path(dir)).unwrap();
    let err = expect(0, &["restore", image, "--to", data.to_str().unwrap(), "--prepare", "--key-file", &fx.key()]);
    let dst = Server::open(&fx.path(dir), server_opts);
    let before = all_tables(&dst);
    for t in &before {
        let check = dst.sql(&format!("CHECK TABLE {t}"));
        assert!(check.contains("\tstatus\tOK"), "{image}: {t}: {check}");
    }
    let b = &info(fx, image)["backup"];
    let file = b["binlog"]["file"].as_str().unwrap().to_owned();
    let pos = b["binlog"]["position"].as_u64().unwrap();
    replay(src, &dst, &file, pos, false);
    let all = all_tables(src);
    assert_eq!(all_tables(&dst), all, "{image}: the same tables after replay");
    assert_eq!(checksums(&dst, &all), checksums(src, &all), "{image}: restored + replayed == source");
    drop(dst);
    std::fs::remove_dir_all(fx.path(dir)).unwrap();
    err
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// The largest page delta (`*.delta`) of a restored incremental, relative to `raw`. Which
/// tables have one is the engine's choice: a table whose creation is still in the redo log
/// after the server's last checkpoint (the checkpoint lags on a loaded machine: sysbench's
/// tables were made just before the full) is copied whole, as `NAME.new`, instead.
fn largest_delta(raw: &Path) -> std::path::PathBuf {
    let mut found = Vec::new();
    let mut todo = vec![raw.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let (p, md) = (e.path(), e.metadata().unwrap());
            if md.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "delta") {
                found.push((md.len(), p.strip_prefix(raw).unwrap().to_path_buf()));
            }
        }
    }
    found.sort();
    let whole: Vec<String> = leftovers(&raw.join("sbtest")).into_iter().filter(|n| n.ends_with(".new")).collect();
    found.pop().unwrap_or_else(|| panic!("no page delta in the incremental; copied whole: {whole:?}")).1
}

#[test]
fn a_chain_with_ddl_restores_at_every_link() {
    if !tools() {
        return;
    }
    let fx = Fixture::new();
    for d in ["scratch", "keys", "bk"] {
        std::fs::create_dir_all(fx.path(d)).unwrap();
    }
    let keys = fx.path("keys/keys.txt");
    mariadb::write_key_file(&keys, None);
    let server_opts: Vec<String> = vec![
        "--plugin-load-add=file_key_management".into(),
        format!("--file-key-management-filename={}", keys.display()),
    ];
    let port = free_port();
    let mut src = source(&fx, port, &server_opts);
    src.sql(DDL_BEFORE);
    let img = |n: &str| fx.s(&format!("bk/{n}.coffer"));

    // No backup yet: --incremental takes a full and says why.
    let log = chain_backup(&fx, port, &img("full"), &["--incremental"]);
    assert!(log.contains("taking a full backup: no earlier backup"), "{log}");
    let full = info(&fx, &img("full"));
    assert_eq!(full["backup"]["chain"]["kind"], "full", "{full}");
    assert!(full["backup"]["server"]["born"].as_i64().is_some(), "{full}");

    // Writes, then incremental 1 while sysbench writes.
    sysbench(&src, "run", &["--time=5"]).wait().unwrap();
    let mut load = sysbench(&src, "run", &["--time=30"]);
    let log = chain_backup(&fx, port, &img("inc1"), &["--incremental"]);
    assert!(log.contains("taking incremental backup 1"), "{log}");
    let inc1 = info(&fx, &img("inc1"));
    assert_eq!(inc1["backup"]["chain"]["parent"], full["backup"]["chain"]["id"]);
    assert_eq!(inc1["backup"]["from_lsn"], full["backup"]["to_lsn"]);
    let _ = load.wait();

    // DDL of every kind, then incremental 2 under load.
    src.sql(DDL_BETWEEN);
    let mut load = sysbench(&src, "run", &["--time=30"]);
    // Tables created and dropped while the engine copies (MDEV-32939's churn); the last one
    // stays.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, socket) = (stop.clone(), src.socket.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sql = format!(
                    "CREATE TABLE ddl.churn{n} (id INT PRIMARY KEY) ENCRYPTED=YES; INSERT INTO ddl.churn{n} VALUES (1); \
                     DROP TABLE IF EXISTS ddl.churn{}",
                    n.max(1) - 1
                );
                let ok = std::process::Command::new(mariadb::which("mariadb").unwrap())
                    .arg(format!("--socket={}", socket.display()))
                    .args(["-uroot", "-e", &sql])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "churn {n}");
                n += 1;
            }
            n
        })
    };
    chain_backup(&fx, port, &img("inc2"), &["--incremental"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(churn.join().unwrap() > 0);
    let _ = load.wait();
    // A differential: on the full, whatever came since.
    src.sql("INSERT INTO ddl.t_new SELECT seq + 3000, 'diff' FROM sbtest.seq_1_to_500");
    let log = chain_backup(&fx, port, &img("diff"), &["--differential"]);
    assert!(log.contains("taking differential backup 1"), "{log}");
    let diff = info(&fx, &img("diff"));
    assert_eq!(diff["backup"]["from_lsn"], full["backup"]["to_lsn"]);
    // More writes, incremental 3: on the newest, the differential.
    sysbench(&src, "run", &["--time=5"]).wait().unwrap();
    src.sql("OPTIMIZE TABLE ddl.enc_renamed; RENAME TABLE ddl.enc_renamed TO ddl.enc_again");
    chain_backup(&fx, port, &img("inc3"), &["--incremental"]);
    let inc3 = info(&fx, &img("inc3"));
    assert_eq!(inc3["backup"]["chain"]["parent"], diff["backup"]["chain"]["id"]);
    assert_eq!(inc3["backup"]["chain"]["depth"], 2);
    // --max-chain reached: a full, with the reason.
    let log =
        chain_backup(&fx, port, &fx.s("other.coffer"), &["--incremental", "--base", &img("inc3"), "--max-chain", "2"]);
    assert!(log.contains("taking a full backup") && log.contains("--max-chain 2"), "{log}");

    // verify --chain: every image and the links.
    let out = expect(0, &["verify", &img("inc2"), "--chain", "--key-file", &fx.key()]);
    assert!(out.contains("chain of 3 backups is linked"), "{out}");

    // Each restores through its chain, starts, checks, and replays to the source.
    let err = restore_check_replay(&fx, &src, &img("inc2"), "r-inc2", &server_opts);
    assert!(err.contains("restoring a chain of 3") && err.contains("applied"), "{err}");
    restore_check_replay(&fx, &src, &img("diff"), "r-diff", &server_opts);
    restore_check_replay(&fx, &src, &img("inc3"), "r-inc3", &server_opts);
    assert!(leftovers(&fx.path("")).iter().all(|n| !n.contains(".coffer-")), "{:?}", leftovers(&fx.path("")));

    // Broken chains are refused before anything is written: a missing middle.
    std::fs::create_dir_all(fx.path("broken")).unwrap();
    for n in ["full", "inc2"] {
        std::fs::copy(img(n), fx.path(&format!("broken/{n}.coffer"))).unwrap();
    }
    let to = fx.s("nothing/data");
    let (code, _, err) =
        run(&["restore", &fx.s("broken/inc2.coffer"), "--to", &to, "--prepare", "--key-file", &fx.key()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is broken") && err.lines().count() == 1, "{err}");
    assert!(!fx.path("nothing").exists(), "nothing written");
    // A key that opens only part of the chain: exit 3.
    std::fs::copy(img("inc1"), fx.path("broken/inc1.coffer")).unwrap();
    std::fs::write(fx.path("other.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fx.path("other.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    expect(
        0,
        &["key", "rotate", &fx.s("broken/inc1.coffer"), "--key-file", &fx.key(), "--new-key-file", &fx.s("other.key")],
    );
    let (code, _, err) =
        run(&["restore", &fx.s("broken/inc2.coffer"), "--to", &to, "--prepare", "--key-file", &fx.key()]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("opens only part of the chain") && err.contains("inc1.coffer"), "{err}");
    assert!(!fx.path("nothing").exists(), "nothing written");
    // A parent whose LSN does not meet its child's, and a parent of another server: images
    // crafted with the key (a real incremental's files, its description edited, backed up
    // again as a directory), refused before anything is written.
    let raw = fx.path("raw1");
    expect(0, &["restore", &img("inc1"), "--to", raw.to_str().unwrap(), "--key-file", &fx.key()]);
    let description: serde_json::Value =
        serde_json::from_slice(&std::fs::read(raw.join("coffer-backup.json")).unwrap()).unwrap();
    for (case, edit) in [
        (
            "lsn",
            &(|d: &mut serde_json::Value| d["to_lsn"] = (d["to_lsn"].as_u64().unwrap() + 1).into())
                as &dyn Fn(&mut serde_json::Value),
        ),
        ("server", &|d: &mut serde_json::Value| d["server"]["born"] = 12345.into()),
    ] {
        let mut d = description.clone();
        edit(&mut d);
        std::fs::write(raw.join("coffer-backup.json"), serde_json::to_vec(&d).unwrap()).unwrap();
        let dir = fx.path(case);
        std::fs::create_dir_all(&dir).unwrap();
        for n in ["full", "inc2"] {
            std::fs::copy(img(n), dir.join(format!("{n}.coffer"))).unwrap();
        }
        let crafted = dir.join("inc1.coffer");
        expect(0, &["backup", raw.to_str().unwrap(), "-o", crafted.to_str().unwrap(), "--key-file", &fx.key()]);
        let inc2 = dir.join("inc2.coffer");
        let (code, _, err) =
            run(&["restore", inc2.to_str().unwrap(), "--to", &to, "--prepare", "--key-file", &fx.key()]);
        assert_eq!(code, 1, "{case}: {err}");
        let why = if case == "lsn" { "the parent ends at LSN" } else { "backups of different servers" };
        assert!(err.contains(why) && err.lines().count() == 1, "{case}: {err}");
        assert!(!fx.path("nothing").exists(), "nothing written");
        let (code, _, err) = run(&["verify", inc2.to_str().unwrap(), "--chain", "--key-file", &fx.key()]);
        assert_eq!(code, 1, "{case}: {err}");
    }

    // The engine fails to apply an incremental (a delta cut short, in an image crafted with
    // the key): its line is reported, and nothing that looks like a restore is left.
    std::fs::write(raw.join("coffer-backup.json"), serde_json::to_vec(&description).unwrap()).unwrap();
    let delta_rel = largest_delta(&raw);
    let delta = raw.join(&delta_rel);
    let len = std::fs::metadata(&delta).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&delta).unwrap().set_len(len / 2 + 100).unwrap();
    std::fs::create_dir_all(fx.path("engine")).unwrap();
    std::fs::copy(img("full"), fx.path("engine/full.coffer")).unwrap();
    let crafted = fx.s("engine/inc1.coffer");
    expect(0, &["backup", raw.to_str().unwrap(), "-o", &crafted, "--key-file", &fx.key(), "--no-validate"]);
    let (code, _, err) = run(&["restore", &crafted, "--to", &to, "--prepare", "--key-file", &fx.key()]);
    assert_eq!(code, 1, "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.contains("the prepare of") && last.contains("mariabackup"), "{err}");
    assert!(!fx.path("nothing/data").exists(), "no target: {err}");
    assert!(leftovers(&fx.path("nothing")).is_empty(), "{:?}", leftovers(&fx.path("nothing")));

    // An incremental arriving on a pipe is restored as it is, and its prepare refused (its
    // chain cannot be found from a pipe): said, and the engine never run on it.
    let image = std::fs::read(img("inc1")).unwrap();
    let (code, _, err) =
        run_with_stdin(&["restore", "-", "--to", &fx.s("piped/data"), "--prepare", "--key-file", &fx.key()], &image);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("applies the whole chain") && !err.contains("mariabackup:"), "{err}");
    assert!(fx.path("piped/data").join(&delta_rel).exists(), "the incremental's own files");

    // A mount point as the target: refused before anything is written (the result is moved in
    // by rename).
    if let Some(mnt) = SmallFs::mount(&fx.path("mnt"), "16m") {
        let (code, _, err) =
            run(&["restore", &img("inc1"), "--to", mnt.0.to_str().unwrap(), "--prepare", "--key-file", &fx.key()]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("is a mount point"), "{err}");
        assert!(leftovers(&mnt.0).is_empty() && !leftovers(&fx.path("")).iter().any(|n| n.contains(".coffer-")));
    }
    // --force replaces a non-empty target whole, once the chain is restored and prepared.
    std::fs::create_dir_all(fx.path("forced/data")).unwrap();
    std::fs::write(fx.path("forced/data/old.txt"), "old").unwrap();
    let forced = fx.s("forced/data");
    let (code, _, err) = run(&["restore", &img("inc1"), "--to", &forced, "--prepare", "--key-file", &fx.key()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not empty") && fx.path("forced/data/old.txt").exists(), "{err}");
    expect(0, &["restore", &img("inc1"), "--to", &forced, "--prepare", "--force", "--key-file", &fx.key()]);
    assert!(!fx.path("forced/data/old.txt").exists() && fx.path("forced/data/ibdata1").exists());

    // The server rebuilt (a new datadir on the same socket and port): a full, with the reason.
    src.stop();
    std::fs::remove_dir_all(fx.path("src")).unwrap();
    let _rebuilt = source(&fx, port, &server_opts);
    let log = chain_backup(&fx, port, &img("after-rebuild"), &["--incremental"]);
    assert!(log.contains("taking a full backup") && log.contains("another server"), "{log}");
}
