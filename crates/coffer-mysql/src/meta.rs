//! What a backup of a server is: engine, versions, times, LSN range, binary log coordinates and
//! GTIDs, Galera state. Read from the small files the engine streams (xtrabackup_checkpoints,
//! xtrabackup_binlog_info or mariadb_backup_binlog_info, xtrabackup_galera_info,
//! xtrabackup_info), stored in the image as `coffer-backup.json`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The name of the metadata entry at the root of an image of a server backup.
pub const META_ENTRY: &str = "coffer-backup.json";
/// The engine's log, kept in the image.
pub const LOG_ENTRY: &str = "backup.log";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: String,
    pub position: u64,
    /// The GTID position (MariaDB `domain-server-seq` list, or a MySQL GTID set), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// "mysql" (coffer ran the engine) or "xbstream" (a stream given to coffer).
    pub source: String,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub server_version: Option<String>,
    /// The server's vendor, from its version string: "MariaDB" or "MySQL".
    pub flavor: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub backup_type: Option<String>,
    pub from_lsn: Option<u64>,
    pub to_lsn: Option<u64>,
    pub last_lsn: Option<u64>,
    pub binlog: Option<BinlogPosition>,
    /// Galera: `uuid:seqno` of the cluster state the backup is consistent with.
    pub galera: Option<String>,
    pub files: u64,
    pub bytes: u64,
}

/// `key = value` lines.
fn pairs(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect()
}

fn text(kept: &BTreeMap<String, Vec<u8>>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| kept.get(*n)).map(|b| String::from_utf8_lossy(b).into_owned())
}

/// `binlog.000001<TAB>79458308<TAB>0-1-2380` (the GTID column is optional; MySQL's may span
/// lines).
pub fn parse_binlog_info(text: &str) -> Option<BinlogPosition> {
    let mut fields = text.split('\t');
    let file = fields.next()?.trim().to_owned();
    let position = fields.next()?.trim().parse().ok()?;
    let gtid: String = fields.collect::<Vec<_>>().join("\t").split_whitespace().collect::<Vec<_>>().join("");
    if file.is_empty() {
        return None;
    }
    Some(BinlogPosition { file, position, gtid: (!gtid.is_empty()).then_some(gtid) })
}

impl BackupInfo {
    /// Fills what the engine's files say.
    pub fn from_kept(source: &str, kept: &BTreeMap<String, Vec<u8>>) -> Self {
        let mut info = BackupInfo { source: source.into(), ..Default::default() };
        if let Some(t) = text(kept, &["xtrabackup_checkpoints"]) {
            let p = pairs(&t);
            info.backup_type = p.get("backup_type").cloned();
            info.from_lsn = p.get("from_lsn").and_then(|v| v.parse().ok());
            info.to_lsn = p.get("to_lsn").and_then(|v| v.parse().ok());
            info.last_lsn = p.get("last_lsn").and_then(|v| v.parse().ok());
        }
        if let Some(t) = text(kept, &["mariadb_backup_binlog_info", "xtrabackup_binlog_info"]) {
            info.binlog = parse_binlog_info(&t);
        }
        if let Some(t) = text(kept, &["mariadb_backup_galera_info", "xtrabackup_galera_info"]) {
            let t = t.trim();
            info.galera = (!t.is_empty()).then(|| t.to_owned());
        }
        if let Some(t) = text(kept, &["mariadb_backup_info", "xtrabackup_info"]) {
            let p = pairs(&t);
            info.engine = p.get("tool_name").cloned();
            info.engine_version = p.get("tool_version").cloned();
            info.server_version = p.get("server_version").cloned();
            info.start_time = p.get("start_time").cloned();
            info.end_time = p.get("end_time").cloned();
        }
        info.flavor = info.server_version.as_deref().map(flavor).map(str::to_owned);
        info
    }

    /// The statements that make a server restored from this backup a replica of its source:
    /// by binary log file and position, and by GTID where the position is known.
    pub fn replication_statements(&self) -> Option<String> {
        let b = self.binlog.as_ref()?;
        let mut out = format!(
            "-- By binary log coordinates:\nCHANGE MASTER TO MASTER_LOG_FILE='{}', MASTER_LOG_POS={};\n",
            b.file.replace('\'', "''"),
            b.position
        );
        if let Some(gtid) = &b.gtid {
            let gtid = gtid.replace('\'', "''");
            if self.flavor.as_deref() == Some("MySQL") {
                out.push_str(&format!(
                    "-- By GTID (MySQL; on a fresh replica, after RESET MASTER):\nSET GLOBAL gtid_purged='{gtid}';\nCHANGE MASTER TO MASTER_AUTO_POSITION=1;\n"
                ));
            } else {
                out.push_str(&format!(
                    "-- By GTID (MariaDB):\nSET GLOBAL gtid_slave_pos='{gtid}';\nCHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n"
                ));
            }
        }
        out.push_str(
            "-- Then add MASTER_HOST, MASTER_PORT, MASTER_USER, MASTER_PASSWORD (and SSL options), and START SLAVE;\n",
        );
        Some(out)
    }
}

/// "MariaDB" or "MySQL" from a version string.
pub fn flavor(version: &str) -> &'static str {
    if version.contains("MariaDB") {
        "MariaDB"
    } else {
        "MySQL"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(files: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        files.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn reads_what_mariabackup_10_11_writes() {
        // Verbatim from a `mariabackup --backup --stream=xbstream` of MariaDB 10.11.19.
        let k = kept(&[
            ("xtrabackup_binlog_info", "binlog.000001\t79458308\t0-1-2380\n"),
            (
                "xtrabackup_checkpoints",
                "backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 47200578\nlast_lsn = 120830583\nrecover_binlog_info = 0\n",
            ),
            (
                "xtrabackup_info",
                "uuid = 2adb1e1b-e807-11f1-bbb4-02fc00000001\nname = \ntool_name = mariabackup\ntool_version = 10.11.19-MariaDB\nserver_version = 10.11.19-MariaDB-0+deb12u1-log\nstart_time = 2026-11-24 13:01:28\nend_time = 2026-11-24 13:01:30\n",
            ),
        ]);
        let info = BackupInfo::from_kept("mysql", &k);
        assert_eq!(info.engine.as_deref(), Some("mariabackup"));
        assert_eq!(info.flavor.as_deref(), Some("MariaDB"));
        assert_eq!((info.from_lsn, info.to_lsn, info.last_lsn), (Some(0), Some(47200578), Some(120830583)));
        let b = info.binlog.clone().unwrap();
        assert_eq!((b.file.as_str(), b.position, b.gtid.as_deref()), ("binlog.000001", 79458308, Some("0-1-2380")));
        let sql = info.replication_statements().unwrap();
        assert!(sql.contains("CHANGE MASTER TO MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS=79458308;"));
        assert!(sql.contains("SET GLOBAL gtid_slave_pos='0-1-2380';"));
        assert!(sql.contains("MASTER_USE_GTID=slave_pos"));
    }

    #[test]
    fn mysql_gtid_sets_and_missing_fields() {
        let info = BackupInfo {
            flavor: Some("MySQL".into()),
            binlog: parse_binlog_info("binlog.000003\t157\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1-2\n"),
            ..Default::default()
        };
        let sql = info.replication_statements().unwrap();
        assert!(
            sql.contains(
                "gtid_purged='3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,4e11fa47-71ca-11e1-9e33-c80aa9429562:1-2'"
            ),
            "{sql}"
        );
        assert!(sql.contains("MASTER_AUTO_POSITION=1"));
        assert_eq!(parse_binlog_info("binlog.000001\t4\n").unwrap().gtid, None);
        assert_eq!(parse_binlog_info(""), None);
        assert!(BackupInfo::default().replication_statements().is_none());
    }
}
