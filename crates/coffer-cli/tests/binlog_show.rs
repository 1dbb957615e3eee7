//! Issue 30: a DBA finds the mistake in the archived binary log (`binlog show --table`) and
//! restores to just before it (`--until-gtid G --exclusive`, `--until-position F:START
//! --exclusive`), against a real MariaDB writing its default binlog_format (MIXED: statements
//! and, where asked, row events), archived with `coffer binlog archive` under a file:// prefix.

mod common;

use common::live;
use common::mariadb::Server;
use common::scenario::*;
use common::*;

/// Runs `sql` in one session; the GTID of its last transaction.
fn gtid_of(server: &Server, sql: &str) -> String {
    let out = server.sql(&format!("{sql}; SELECT @@last_gtid"));
    out.lines().last().unwrap().trim().to_owned()
}

/// The source, its backup and archive: the mistakes made after the backup, each GTID and
/// each snapshot taken just before one.
struct Mistakes {
    fx: Fixture,
    _server: Server,
    prefix: String,
    binlogs: String,
    gtid: std::collections::BTreeMap<&'static str, String>,
    /// CHECKSUM TABLE shop.orders before the bad UPDATE, and before the DROP.
    before_update: String,
    before_drop: String,
}

fn mistakes() -> Mistakes {
    let fx = Fixture::new();
    let tables = "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, v INT); \
                  CREATE TABLE shop.items (id INT PRIMARY KEY, v INT); CREATE TABLE shop.orders2 (id INT PRIMARY KEY, v INT);";
    let Source { server, port, .. } = Scenario::new(&fx).backup_user().repl().sql(tables).start();
    assert_eq!(server.sql("SELECT @@binlog_format").trim(), "MIXED");
    std::fs::create_dir_all(fx.path("prod/binlog")).unwrap();
    let prefix = format!("file://{}/", fx.path("prod").display());
    let binlogs = format!("{prefix}binlog/");
    live::coffer_ok(&live::backup_args(&fx, port, &prefix));
    let sum = |t: &str| live::checksums(&server, &[t.to_owned()]);
    let mut gtid = std::collections::BTreeMap::new();
    gtid.insert("orders", gtid_of(&server, "INSERT INTO shop.orders SELECT seq, seq FROM shop.seq_1_to_50"));
    gtid.insert("items", gtid_of(&server, "INSERT INTO shop.items SELECT seq, seq FROM shop.seq_1_to_50"));
    gtid.insert("orders2", gtid_of(&server, "INSERT INTO shop.orders2 SELECT seq, seq FROM shop.seq_1_to_50"));
    let before_update = sum("shop.orders");
    // Logged as a statement (MIXED), then one on another table whose name begins the same.
    gtid.insert("bad update", gtid_of(&server, "UPDATE shop.orders SET v = 0 WHERE id > 10"));
    // A backup that holds the bad update: an exclusive stop before it cannot start there.
    live::coffer_ok(&live::backup_args(&fx, port, &prefix));
    gtid.insert("orders2 update", gtid_of(&server, "UPDATE shop.orders2 SET v = 0"));
    // Logged as row events.
    gtid.insert(
        "rows update",
        gtid_of(&server, "SET SESSION binlog_format = ROW; UPDATE shop.items SET v = v + 1 WHERE id <= 3"),
    );
    gtid.insert("truncate", gtid_of(&server, "USE shop; TRUNCATE TABLE items"));
    let before_drop = sum("shop.orders");
    gtid.insert("drop", gtid_of(&server, "DROP TABLE shop.orders"));
    gtid.insert("after", gtid_of(&server, "INSERT INTO shop.orders2 VALUES (100, 1)"));
    live::coffer_ok(&archive_args(&fx, &socket_args(&server), &binlogs, &[]));
    Mistakes { fx, _server: server, prefix, binlogs, gtid, before_update, before_drop }
}

impl Mistakes {
    /// `binlog show` with `extra`: its lines but the last, and the last.
    fn show(&self, extra: &[&str]) -> (Vec<String>, String) {
        let key = self.fx.key();
        let mut args = vec!["binlog", "show", &self.binlogs, "--key-file", &key];
        args.extend_from_slice(extra);
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        let mut lines: Vec<String> = String::from_utf8(out).unwrap().lines().map(str::to_owned).collect();
        let last = lines.pop().expect("a last line");
        (lines, last)
    }

    fn g(&self, what: &str) -> &str {
        &self.gtid[what]
    }
}

/// The line of `gtid` among `lines`.
fn line_of<'a>(lines: &'a [String], gtid: &str) -> Option<&'a String> {
    lines.iter().find(|l| l.split("  ").next() == Some(gtid))
}

#[test]
fn binlog_show_finds_a_drop_a_truncate_and_an_update_by_their_gtids() {
    if !live::tools() {
        return;
    }
    let m = mistakes();
    let (orders, last) = m.show(&["--table", "shop.orders"]);
    for what in ["orders", "bad update", "drop"] {
        assert!(line_of(&orders, m.g(what)).is_some(), "{what} ({}) not shown:\n{}", m.g(what), orders.join("\n"));
    }
    for what in ["items", "orders2", "orders2 update", "rows update", "truncate", "after"] {
        assert!(line_of(&orders, m.g(what)).is_none(), "{what} shown for shop.orders:\n{}", orders.join("\n"));
    }
    let update = line_of(&orders, m.g("bad update")).unwrap();
    assert!(update.ends_with("UPDATE shop.orders SET v = 0 WHERE id > 10"), "{update}");
    let drop = line_of(&orders, m.g("drop")).unwrap();
    assert!(drop.contains("DROP TABLE `shop`.`orders`") || drop.contains("DROP TABLE shop.orders"), "{drop}");
    assert!(last.starts_with("read ") && last.contains(&format!("; showed {} touching shop.orders", orders.len())));

    let (items, _) = m.show(&["--table", "shop.items"]);
    for what in ["items", "rows update", "truncate"] {
        assert!(line_of(&items, m.g(what)).is_some(), "{what} not shown:\n{}", items.join("\n"));
    }
    for what in ["orders", "bad update", "drop", "orders2 update"] {
        assert!(line_of(&items, m.g(what)).is_none(), "{what} shown for shop.items:\n{}", items.join("\n"));
    }
    let rows = line_of(&items, m.g("rows update")).unwrap();
    assert!(rows.contains("UPDATE shop.items (1 row event: UPDATE shop.items SET v = v + 1 WHERE id <= 3)"), "{rows}");
    assert!(line_of(&items, m.g("truncate")).unwrap().ends_with("[shop] TRUNCATE TABLE items"));

    // Every transaction without --table; each begins where the one before ends, in a file.
    let (all, last) = m.show(&[]);
    assert!(all.len() > orders.len() + items.len() - 2, "{}", all.join("\n"));
    assert!(last.contains(&format!("showed {}", all.len())) && !last.contains("touching"), "{last}");
    // --json: one object per transaction, then the counts; START and END as the lines say.
    let (json, last) = m.show(&["--table", "shop.orders", "--json"]);
    let objects: Vec<serde_json::Value> = json.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let update = objects.iter().find(|o| o["gtid"] == m.g("bad update")).expect("the bad update");
    let at = format!("{}:{}-{}", update["file"].as_str().unwrap(), update["start"], update["end"]);
    assert!(line_of(&orders, m.g("bad update")).unwrap().contains(&at), "{at}");
    assert_eq!(update["parts"][0]["kind"], "statement", "{update}");
    let counts: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(counts["shown"], objects.len(), "{counts}");
    assert!(counts["read"].as_u64().unwrap() >= all.len() as u64, "{counts}");
    // Times filter by the transactions' stamps: none after the year 2100.
    let (none, last) = m.show(&["--from", "2100-01-01 00:00:00"]);
    assert!(none.is_empty() && last.contains("showed 0"), "{last}");
    // Without a key: a usage error.
    let (code, _, err) = run(&["binlog", "show", &m.binlogs]);
    assert_eq!(code, 2, "{err}");
}

/// `--until-gtid G --exclusive` replays every transaction before G and not G: shop.orders as
/// it was just before the bad UPDATE, the GTID position the one before; by position too
/// (START as `binlog show` prints it), through `coffer drill`; refusals in one line.
#[test]
fn an_exclusive_pitr_stops_just_before_the_mistake() {
    if !live::tools() {
        return;
    }
    let m = mistakes();
    let fx = &m.fx;
    let until = coffer::repo::recovery::Until::parse_gtid(m.g("bad update")).unwrap().exclusive().unwrap();
    let spec = coffer::server::pitr::PitrSpec {
        backups: m.prefix.clone(),
        binlogs: m.binlogs.clone(),
        until,
        restore: coffer::restore::RestoreSpec {
            to: fx.path("r1/data"),
            keys: coffer::keys::KeySources { key_files: vec![fx.path("k.key")], ..Default::default() },
            ..Default::default()
        },
        options: Vec::new(),
        print_replay: false,
        applier: Default::default(),
    };
    let summary = coffer::server::pitr::restore_until(&spec, &coffer::Env::default()).unwrap();
    assert_eq!(summary.last_gtid.as_deref(), Some(m.g("orders2")), "the transaction before it");
    let restored = Server::open(&fx.path("r1"), &[]);
    assert_eq!(live::checksums(&restored, &["shop.orders".into()]), m.before_update);
    assert_eq!(restored.sql("SELECT @@gtid_slave_pos").trim(), m.g("orders2"));
    drop(restored);

    // The same stop by position, START as `binlog show` prints it; and before the TRUNCATE.
    let (orders, _) = m.show(&["--table", "shop.orders"]);
    let line = line_of(&orders, m.g("bad update")).unwrap();
    let place = line.split("  ").nth(2).unwrap();
    let (file, range) = place.split_once(':').unwrap();
    let start: u32 = range.split_once('-').unwrap().0.parse().unwrap();
    let drill = |target: &[&str]| {
        let key = fx.key();
        let scratch = fx.s("scratch");
        let mut args = vec!["drill", &m.prefix, "--scratch", &scratch, "--key-file", &key, "--json"];
        args.extend_from_slice(target);
        let (code, out, err) = run(&args);
        (code, serde_json::from_slice::<serde_json::Value>(&out).unwrap_or_default(), err)
    };
    let at = format!("{file}:{start}");
    let (code, report, err) = drill(&["--until-position", &at, "--exclusive"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["pitr"]["stop"], serde_json::json!([file, start]), "{report}");
    assert_eq!(report["pitr"]["last_gtid"], m.g("orders2"), "{report}");
    let (code, report, err) = drill(&["--until-gtid", m.g("truncate"), "--exclusive"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["pitr"]["last_gtid"], m.g("rows update"), "{report}");
    // The inclusive form replays the bad update itself.
    let (code, report, err) = drill(&["--until-gtid", m.g("bad update")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["pitr"]["last_gtid"], m.g("bad update"), "{report}");

    // Refused, one line: a position that is not a transaction's start, a time, several GTIDs,
    // --exclusive alone.
    let inside = format!("{file}:{}", start + 1);
    let (code, _, err) = drill(&["--until-position", &inside, "--exclusive"]);
    assert!(code != 0 && err.contains("no transaction begins there"), "{err}");
    for (target, says) in [
        (
            vec!["--until", "2026-01-01 00:00:00", "--exclusive"],
            "--exclusive goes with --until-gtid or --until-position",
        ),
        (vec!["--until-gtid", "0-1-5,1-1-1", "--exclusive"], "give one GTID"),
        (vec!["--exclusive"], "--exclusive goes with"),
    ] {
        let (code, _, err) = drill(&target);
        assert_eq!(code, 2, "{target:?}: {err}");
        assert!(err.contains(says) && err.trim().lines().count() == 1, "{target:?}: {err}");
    }
}

/// `coffer restore PREFIX --until-gtid G --exclusive --to DIR`: the table as it was just
/// before the DROP.
#[test]
fn restore_until_a_gtid_exclusive_gives_the_table_just_before_the_drop() {
    if !live::tools() {
        return;
    }
    let m = mistakes();
    let key = m.fx.key();
    let to = m.fx.s("r/data");
    let (code, _, err) =
        run(&["restore", &m.prefix, "--until-gtid", m.g("drop"), "--exclusive", "--to", &to, "--key-file", &key]);
    assert_eq!(code, 0, "{err}");
    let restored = Server::open(&m.fx.path("r"), &[]);
    assert_eq!(live::checksums(&restored, &["shop.orders".into()]), m.before_drop);
}
