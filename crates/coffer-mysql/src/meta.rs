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
    /// Where the backup sits in its chain (absent from images made before chains, and from
    /// stored xbstreams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
    /// The server the backup was taken from, as coffer established it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerIdentity>,
}

/// What a backup holds: every page, or the pages changed since its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Every page.
    Full,
    /// The pages changed since the previous backup of the chain (its parent).
    Incremental,
    /// The pages changed since the chain's full backup (its parent).
    Differential,
}

impl BackupKind {
    pub fn name(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incremental",
            BackupKind::Differential => "differential",
        }
    }
}

/// Where a backup sits in its chain (docs/FORMAT.md §9.2): its own id, its parent's and its
/// full backup's ids, and how many backups lie between it and the full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// This backup's id: 32 lowercase hexadecimal digits, random.
    pub id: String,
    pub kind: BackupKind,
    /// The backup whose `to_lsn` this one starts from (none for a full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The chain's full backup (a full names itself).
    pub full: String,
    /// 0 for a full, its parent's depth + 1 otherwise.
    pub depth: u32,
}

/// A backup id: 32 lowercase hexadecimal digits.
pub fn is_backup_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ChainLink {
    /// A new full backup's link, under a fresh id.
    pub fn full(id: String) -> Self {
        ChainLink { full: id.clone(), id, kind: BackupKind::Full, parent: None, depth: 0 }
    }

    /// A backup of `kind` on top of `parent`, under a fresh id.
    pub fn on(parent: &ChainLink, kind: BackupKind, id: String) -> Self {
        let depth = parent.depth.saturating_add(1);
        ChainLink { id, kind, parent: Some(parent.id.clone()), full: parent.full.clone(), depth }
    }

    /// The link is one a writer makes: ids well-formed, a full names itself and no parent, a
    /// differential's parent is its full, depths agree with kinds.
    pub fn is_consistent(&self) -> bool {
        let ids = is_backup_id(&self.id) && is_backup_id(&self.full) && self.parent.as_deref().is_none_or(is_backup_id);
        ids && match self.kind {
            BackupKind::Full => self.parent.is_none() && self.full == self.id && self.depth == 0,
            BackupKind::Differential => self.parent.as_ref() == Some(&self.full) && self.depth == 1,
            BackupKind::Incremental => {
                self.depth >= 1 && self.id != self.full && self.parent.as_ref().is_some_and(|p| *p != self.id)
            }
        }
    }
}

/// Who a server is, as far as it can be told from SQL (docs/FORMAT.md §9.2). MySQL has a
/// `server_uuid`, made when its datadir is initialized: that alone identifies it. MariaDB has
/// none; coffer records its host name, datadir, `server_id`, and `born`: the creation time of
/// its `mysql.global_priv` table, which `mariadb-install-db` makes (a new datadir, even on the
/// same host, path and port, has another), and which only a rebuild of that table changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_uuid: Option<String>,
    /// Unix seconds (MariaDB: the creation time of `mysql.global_priv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub born: Option<i64>,
    /// `VERSION()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl ServerIdentity {
    /// Reads `@@hostname, @@datadir, @@server_id, VERSION(), uuid, born` as the client prints
    /// them (one line, tab-separated, `NULL` for none). Values the server would not send are
    /// dropped.
    pub fn parse_row(line: &str) -> Self {
        let cols: Vec<&str> = line.trim_end_matches(['\r', '\n']).split('\t').collect();
        let col = |i: usize| cols.get(i).copied().filter(|v| *v != "NULL").and_then(|v| bounded(v.trim(), MAX_FIELD));
        ServerIdentity {
            hostname: col(0),
            datadir: col(1),
            server_id: col(2).and_then(|v| v.parse().ok()),
            version: col(3),
            server_uuid: col(4).filter(|u| is_uuid(u)).map(|u| u.to_ascii_lowercase()),
            born: col(5).and_then(|v| v.parse().ok()),
        }
    }

    /// Why `self` (the server now) is not the server of `earlier` (a backup's), if it is not.
    /// A field either side lacks is not compared; the major version (`10.11`, `8.0`) must match.
    pub fn differs_from(&self, earlier: &ServerIdentity) -> Option<String> {
        fn differ<T: PartialEq + std::fmt::Debug>(a: &Option<T>, b: &Option<T>) -> bool {
            matches!((a, b), (Some(a), Some(b)) if a != b)
        }
        if differ(&self.server_uuid, &earlier.server_uuid) {
            return Some(format!("server_uuid {:?}, not {:?}", opt(&self.server_uuid), opt(&earlier.server_uuid)));
        }
        if differ(&self.born, &earlier.born) {
            return Some("its system tables were created at another time (a new or rebuilt datadir)".into());
        }
        if differ(&self.hostname, &earlier.hostname) {
            return Some(format!("host {:?}, not {:?}", opt(&self.hostname), opt(&earlier.hostname)));
        }
        if differ(&self.datadir, &earlier.datadir) {
            return Some(format!("datadir {:?}, not {:?}", opt(&self.datadir), opt(&earlier.datadir)));
        }
        if differ(&self.server_id, &earlier.server_id) {
            return Some(format!("server_id {}, not {}", opt(&self.server_id), opt(&earlier.server_id)));
        }
        let major = |v: &Option<String>| v.as_deref().map(major_version);
        if differ(&major(&self.version), &major(&earlier.version)) {
            return Some(format!(
                "version {}, not {} (a new major version)",
                major(&self.version).unwrap_or_default(),
                major(&earlier.version).unwrap_or_default()
            ));
        }
        None
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "?".to_owned(), ToString::to_string)
}

/// `10.11` of `10.11.19-MariaDB-0+deb12u1-log`, `8.0` of `8.0.36`.
pub fn major_version(version: &str) -> String {
    version.split(['.', '-']).take(2).collect::<Vec<_>>().join(".")
}

/// The most a backup's description (`coffer-backup.json`) may take: readers load it whole and
/// refuse a larger one. [`BackupInfo::from_kept`] keeps every description well below it.
pub const MAX_DESCRIPTION: usize = 1 << 20;
/// The longest value kept of a short field (versions, times, file names, Galera state).
const MAX_FIELD: usize = 1024;
/// The longest GTID set kept (a MySQL set names one UUID per server that ever wrote: ~40 bytes
/// each).
const MAX_GTID: usize = 64 << 10;

/// `value`, if it is one a description can carry: not empty, at most `max` bytes, and free
/// of control characters (the engine's files come from a stream anyone can write).
fn bounded(value: &str, max: usize) -> Option<String> {
    (!value.is_empty() && value.len() <= max && !value.chars().any(char::is_control)).then(|| value.to_owned())
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
    let file = bounded(fields.next()?.trim(), MAX_FIELD)?;
    let position = fields.next()?.trim().parse().ok()?;
    let gtid: String = fields.collect::<Vec<_>>().join("\t").split_whitespace().collect::<Vec<_>>().join("");
    Some(BinlogPosition { file, position, gtid: bounded(&gtid, MAX_GTID) })
}

impl BackupInfo {
    /// Fills what the engine's files say.
    pub fn from_kept(source: &str, kept: &BTreeMap<String, Vec<u8>>) -> Self {
        let mut info = BackupInfo { source: source.into(), ..Default::default() };
        if let Some(t) = text(kept, &["xtrabackup_checkpoints"]) {
            let p = pairs(&t);
            info.backup_type = p.get("backup_type").and_then(|v| bounded(v, MAX_FIELD));
            info.from_lsn = p.get("from_lsn").and_then(|v| v.parse().ok());
            info.to_lsn = p.get("to_lsn").and_then(|v| v.parse().ok());
            info.last_lsn = p.get("last_lsn").and_then(|v| v.parse().ok());
        }
        if let Some(t) = text(kept, &["mariadb_backup_binlog_info", "xtrabackup_binlog_info"]) {
            info.binlog = parse_binlog_info(&t);
        }
        if let Some(t) = text(kept, &["mariadb_backup_galera_info", "xtrabackup_galera_info"]) {
            info.galera = t.lines().next().and_then(|l| bounded(l.trim(), MAX_FIELD));
        }
        if let Some(t) = text(kept, &["mariadb_backup_info", "xtrabackup_info"]) {
            let p = pairs(&t);
            let field = |k: &str| p.get(k).and_then(|v| bounded(v, MAX_FIELD));
            info.engine = field("tool_name");
            info.engine_version = field("tool_version");
            info.server_version = field("server_version");
            info.start_time = field("start_time");
            info.end_time = field("end_time");
        }
        info.flavor = info.server_version.as_deref().map(flavor).map(str::to_owned);
        info
    }

    /// The statements that make a server restored from this backup a replica of its source:
    /// by binary log file and position, and by GTID where the position is known. `None` when
    /// the backup recorded no position.
    ///
    /// The values come from the image (and, before it, from a stream anyone could have
    /// written): each must match the grammar the server itself writes, or nothing is printed.
    /// They are then quoted so that the statements mean the same with `NO_BACKSLASH_ESCAPES`
    /// on or off.
    pub fn replication_statements(&self) -> Result<Option<String>, MetaError> {
        let Some(b) = self.binlog.as_ref() else { return Ok(None) };
        if !is_binlog_file_name(&b.file) {
            return Err(MetaError::BinlogFile(shown(&b.file)));
        }
        let mysql = self.flavor.as_deref() == Some("MySQL");
        let gtid = match &b.gtid {
            Some(g) if mysql && !is_mysql_gtid_set(g) => return Err(MetaError::Gtid(shown(g), "MySQL")),
            Some(g) if !mysql && !is_mariadb_gtid_list(g) => return Err(MetaError::Gtid(shown(g), "MariaDB")),
            Some(g) => Some(sql_string(g)?),
            None => None,
        };
        let mut out = format!(
            "-- By binary log coordinates:\nCHANGE MASTER TO MASTER_LOG_FILE={}, MASTER_LOG_POS={};\n",
            sql_string(&b.file)?,
            b.position
        );
        if let Some(gtid) = gtid {
            if mysql {
                out.push_str(&format!(
                    "-- By GTID (MySQL; on a fresh replica, after RESET MASTER):\nSET GLOBAL gtid_purged={gtid};\nCHANGE MASTER TO MASTER_AUTO_POSITION=1;\n"
                ));
            } else {
                out.push_str(&format!(
                    "-- By GTID (MariaDB):\nSET GLOBAL gtid_slave_pos={gtid};\nCHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n"
                ));
            }
        }
        out.push_str(
            "-- Then add MASTER_HOST, MASTER_PORT, MASTER_USER, MASTER_PASSWORD (and SSL options), and START SLAVE;\n",
        );
        Ok(Some(out))
    }
}

/// Why coffer refuses to print statements from a backup's description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    #[error("the backup's binary log file name {0} is not one a server writes (BASENAME.NNNNNN, the basename of letters, digits, '.', '_', '-' or '+'): refusing to print SQL with it")]
    BinlogFile(String),
    #[error("the backup's GTID position {0} is not a {1} GTID set: refusing to print SQL with it")]
    Gtid(String, &'static str),
    #[error("the value {0} cannot be quoted the same way under every sql_mode: refusing to print SQL with it")]
    Unquotable(String),
}

/// A value for a message: quoted and escaped (so it stays on one line and prints no control
/// characters), and cut short if long.
fn shown(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        Some((at, _)) => format!("{:?}...", &value[..at]),
        None => format!("{value:?}"),
    }
}

/// `value` as an SQL string literal. Only printable ASCII other than `'` and `\` is accepted:
/// such a literal means the same whether or not `NO_BACKSLASH_ESCAPES` is set (a backslash is
/// an escape without it and a plain character with it, so no one escaping of it is right for
/// both), and whatever the connection's character set.
pub fn sql_string(value: &str) -> Result<String, MetaError> {
    if value.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'\'' && b != b'\\') {
        Ok(format!("'{value}'"))
    } else {
        Err(MetaError::Unquotable(shown(value)))
    }
}

/// A binary log file name as MySQL and MariaDB write it (`SHOW MASTER STATUS`, the engines'
/// `*_binlog_info`): a basename, a dot and the file's number, at least six digits (`%06lu`,
/// up to 2^31 - 1). The servers take any file name as a basename (MariaDB's `--log-basename`
/// only refuses '.' and '/'); coffer accepts the characters of host names and of the usual
/// names (`binlog`, `mysql-bin`, `HOST-bin`, `mariadb-bin`), and refuses the rest.
pub fn is_binlog_file_name(name: &str) -> bool {
    let Some((base, number)) = name.rsplit_once('.') else { return false };
    !base.is_empty()
        && name.len() <= 255
        && base.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
        && (6..=10).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
        && number.parse::<u64>().is_ok_and(|n| n <= i32::MAX as u64)
}

/// The number of a binary log file (`binlog.000042`: 42; 0 if it has none): files sort by it.
pub fn binlog_file_number(name: &str) -> u64 {
    name.rsplit_once('.').and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
}

/// A decimal number without sign or leading `+`, at most `max`.
fn is_number(s: &str, max: u64) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok_and(|n| n <= max)
}

/// A UUID in its text form: 8-4-4-4-12 hexadecimal digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A MySQL 8.4 GTID tag: a letter or underscore, then up to 31 letters, digits or underscores.
fn is_gtid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 32
        && b.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// A MySQL GTID set (`gtid_executed`, `gtid_purged`): `UUID:INTERVAL[:INTERVAL...]` joined by
/// commas, an interval `N` or `N-M` (1 <= N <= M < 2^63), and since 8.4 tags (`UUID:TAG:1-5`,
/// a tag naming the intervals after it). The empty set is valid too. Whitespace (MySQL puts a
/// line break after each comma) must have been removed.
pub fn is_mysql_gtid_set(set: &str) -> bool {
    const GNO_MAX: u64 = i64::MAX as u64 - 1;
    set.is_empty()
        || set.split(',').all(|uuid_set| {
            let mut parts = uuid_set.split(':');
            if !parts.next().is_some_and(is_uuid) {
                return false;
            }
            // A tag names the intervals after it: at least one follows each tag, and there is
            // at least one interval.
            let (mut after_tag, mut intervals) = (false, 0);
            for part in parts {
                if is_gtid_tag(part) {
                    if after_tag {
                        return false;
                    }
                    after_tag = true;
                    continue;
                }
                let (n, m) = part.split_once('-').unwrap_or((part, part));
                if !(is_number(n, GNO_MAX) && is_number(m, GNO_MAX)) {
                    return false;
                }
                let (n, m) = (n.parse::<u64>().unwrap_or(0), m.parse::<u64>().unwrap_or(0));
                if n == 0 || m < n {
                    return false;
                }
                after_tag = false;
                intervals += 1;
            }
            !after_tag && intervals > 0
        })
}

/// A MariaDB GTID position (`gtid_current_pos`, `gtid_slave_pos`): `DOMAIN-SERVER-SEQNO`
/// joined by commas (32-bit domain and server ids, a 64-bit sequence number), one per domain.
/// The empty position is valid too.
pub fn is_mariadb_gtid_list(list: &str) -> bool {
    let mut domains = std::collections::HashSet::new();
    list.is_empty()
        || list.split(',').all(|gtid| {
            let parts: Vec<&str> = gtid.split('-').collect();
            parts.len() == 3
                && is_number(parts[0], u32::MAX.into())
                && is_number(parts[1], u32::MAX.into())
                && is_number(parts[2], u64::MAX)
                && domains.insert(parts[0].parse::<u32>().unwrap_or_default())
        })
}

/// The Galera position a backup records (`xtrabackup_galera_info`): `UUID:SEQNO` (the seqno
/// -1 when undefined), which MariaDB may follow with a space and the `wsrep_gtid_domain_id`.
pub fn is_galera_position(position: &str) -> bool {
    let (state, domain) = match position.split_once(' ') {
        Some((s, d)) => (s, Some(d)),
        None => (position, None),
    };
    let Some((uuid, seqno)) = state.split_once(':') else { return false };
    is_uuid(uuid)
        && (seqno == "-1" || is_number(seqno, i64::MAX as u64))
        && domain.is_none_or(|d| is_number(d, u32::MAX.into()))
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
        let sql = info.replication_statements().unwrap().unwrap();
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
        let sql = info.replication_statements().unwrap().unwrap();
        assert!(
            sql.contains(
                "gtid_purged='3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,4e11fa47-71ca-11e1-9e33-c80aa9429562:1-2'"
            ),
            "{sql}"
        );
        assert!(sql.contains("MASTER_AUTO_POSITION=1"));
        assert_eq!(parse_binlog_info("binlog.000001\t4\n").unwrap().gtid, None);
        assert_eq!(parse_binlog_info(""), None);
        assert_eq!(BackupInfo::default().replication_statements(), Ok(None));
    }

    /// The engine's files can be anything: whatever they hold, the description stays within
    /// what readers load, and carries no control characters.
    #[test]
    fn descriptions_stay_small_and_printable_whatever_the_stream_holds() {
        let huge = "\"".repeat(1 << 20);
        let k = kept(&[
            ("xtrabackup_binlog_info", &format!("{huge}\t4\t{huge}\n")),
            ("xtrabackup_galera_info", &huge),
            ("xtrabackup_checkpoints", &format!("backup_type = {huge}\n")),
            ("xtrabackup_info", &format!("tool_name = {huge}\nserver_version = x\u{1b}[2Jy\nstart_time = {huge}\n")),
        ]);
        let info = BackupInfo::from_kept("xbstream", &k);
        assert!(serde_json::to_vec_pretty(&info).unwrap().len() < MAX_DESCRIPTION / 4);
        assert_eq!((info.binlog, info.galera, info.engine, info.server_version), (None, None, None, None));
        let k = kept(&[("xtrabackup_binlog_info", &format!("binlog.000001\t4\t{huge}\n"))]);
        assert_eq!(BackupInfo::from_kept("xbstream", &k).binlog.unwrap().gtid, None);
        // The largest of everything still fits.
        let field = "\"".repeat(MAX_FIELD);
        let gtid = "\"".repeat(MAX_GTID);
        let info = BackupInfo {
            binlog: Some(BinlogPosition { file: field.clone(), position: u64::MAX, gtid: Some(gtid) }),
            galera: Some(field.clone()),
            backup_type: Some(field.clone()),
            engine: Some(field.clone()),
            engine_version: Some(field.clone()),
            server_version: Some(field.clone()),
            flavor: Some(field.clone()),
            start_time: Some(field.clone()),
            end_time: Some(field.clone()),
            source: field,
            ..Default::default()
        };
        assert!(serde_json::to_vec_pretty(&info).unwrap().len() < MAX_DESCRIPTION / 4);
    }

    /// Issue 13, item 2: an xbstream whose binlog info names
    /// `binlog.000001\'; DROP DATABASE important; --` printed a CHANGE MASTER statement that,
    /// piped into `mariadb`, dropped the database (doubling `'` is no quoting where `\` escapes).
    #[test]
    fn injected_binlog_coordinates_print_no_sql() {
        let hostile_files = [
            "binlog.000001\\'; DROP DATABASE important; --",
            "binlog.000001'; DROP DATABASE important; --",
            "binlog.000001\\",
            "bin log.000001",
            "binlog\u{7}.000001",
            "binlog.\u{1b}[2J000001",
            "binlog",
            "binlog.12345",
            "binlog.00000x",
            ".000001",
            "../binlog.000001",
            "binlog.99999999999",
        ];
        for file in hostile_files {
            let k = kept(&[("xtrabackup_binlog_info", &format!("{file}\t4\t0-1-2\n"))]);
            let info = BackupInfo::from_kept("xbstream", &k);
            let Some(b) = &info.binlog else { continue };
            let err = info.replication_statements().expect_err(file);
            assert!(matches!(err, MetaError::BinlogFile(_)), "{file:?}: {err}");
            let msg = err.to_string();
            assert!(!msg.contains('\n') && !msg.contains('\u{1b}'), "one line, no control characters: {msg:?}");
            assert!(!b.file.is_empty());
        }
        let hostile_gtids = [
            ("MariaDB", "0-1-2'; DROP DATABASE important; --"),
            ("MariaDB", "0-1-2\\"),
            ("MariaDB", "0-1"),
            ("MariaDB", "0-1-2,0-2-3"),
            ("MariaDB", "0-1-x"),
            ("MariaDB", "-1-2"),
            ("MariaDB", "4294967296-1-2"),
            ("MySQL", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'; DROP DATABASE important; --"),
            ("MySQL", "3e11fa47-71ca-11e1-9e33-c80aa9429562"),
            ("MySQL", "3e11fa47-71ca-11e1-9e33-c80aa9429562:0"),
            ("MySQL", "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-1"),
            ("MySQL", "3e11fa47-71ca-11e1-9e33-c80aa9429562:tag"),
            ("MySQL", "3e11fa47-71ca-11e1-9e33-c80aa9429562:a:b:1"),
            ("MySQL", "3e11fa47-71ca-11e1-9e33-c80aa942956:1"),
            ("MySQL", "0-1-2"),
        ];
        for (flavor, gtid) in hostile_gtids {
            let info = BackupInfo {
                flavor: Some(flavor.into()),
                binlog: Some(BinlogPosition { file: "binlog.000001".into(), position: 4, gtid: Some(gtid.into()) }),
                ..Default::default()
            };
            let err = info.replication_statements().expect_err(gtid);
            assert!(matches!(err, MetaError::Gtid(..)), "{gtid:?}: {err}");
        }
    }

    #[test]
    fn what_servers_write_is_accepted() {
        for file in ["binlog.000001", "mysql-bin.000096", "db-01.example.com-bin.001234", "x_y+z.2147483647"] {
            assert!(is_binlog_file_name(file), "{file}");
        }
        for set in [
            "",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7:9-11,4e11fa47-71ca-11e1-9e33-c80aa9429562:1",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:tag_1:1-3:_x:7",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:tag:1-3",
        ] {
            assert!(is_mysql_gtid_set(set), "{set}");
        }
        for list in ["", "0-1-2380", "0-1-2,1-2-3,4294967295-4294967295-18446744073709551615"] {
            assert!(is_mariadb_gtid_list(list), "{list}");
        }
        for pos in ["2adb1e1b-e807-11f1-bbb4-02fc00000001:17", "2adb1e1b-e807-11f1-bbb4-02fc00000001:-1 0"] {
            assert!(is_galera_position(pos), "{pos}");
        }
        for pos in
            ["2adb1e1b-e807-11f1-bbb4-02fc00000001:-2", "x:1", "2adb1e1b-e807-11f1-bbb4-02fc00000001:1; rm -rf /"]
        {
            assert!(!is_galera_position(pos), "{pos}");
        }
    }

    #[test]
    fn literals_mean_the_same_under_every_sql_mode() {
        assert_eq!(sql_string("binlog.000001").unwrap(), "'binlog.000001'");
        for bad in ["a'b", "a\\b", "a\nb", "a\u{0}b", "é", "\u{5c}'"] {
            assert!(sql_string(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn identities_and_links() {
        let row = "db1\t/var/lib/mysql/\t1\t10.11.19-MariaDB-0+deb12u1-log\tNULL\t1795507200\t312002801\n";
        let me = ServerIdentity::parse_row(row);
        assert_eq!(me.hostname.as_deref(), Some("db1"));
        assert_eq!((me.server_id, me.born, me.server_uuid.as_deref()), (Some(1), Some(1_795_507_200), None));
        assert_eq!(major_version(me.version.as_deref().unwrap()), "10.11");
        assert_eq!(me.differs_from(&me), None);
        let mut rebuilt = me.clone();
        rebuilt.born = Some(1_795_507_300);
        assert!(rebuilt.differs_from(&me).unwrap().contains("another time"));
        let mut upgraded = me.clone();
        upgraded.version = Some("11.4.4-MariaDB".into());
        assert!(upgraded.differs_from(&me).unwrap().contains("major version"));
        let mut unknown = me.clone();
        unknown.born = None;
        assert_eq!(unknown.differs_from(&me), None, "a field one side lacks is not compared");
        let mysql = ServerIdentity::parse_row("h\t/d/\t2\t8.0.36\t3E11FA47-71CA-11E1-9E33-C80AA9429562\tNULL\t9");
        assert_eq!(mysql.server_uuid.as_deref(), Some("3e11fa47-71ca-11e1-9e33-c80aa9429562"));
        assert_eq!(ServerIdentity::parse_row("h\t/d/\t2\t8.0.36\tnot-a-uuid").server_uuid, None);

        let full = ChainLink::full("a".repeat(32));
        let inc = ChainLink::on(&full, BackupKind::Incremental, "b".repeat(32));
        let diff = ChainLink::on(&full, BackupKind::Differential, "c".repeat(32));
        assert!(full.is_consistent() && inc.is_consistent() && diff.is_consistent());
        let on_inc = ChainLink::on(&inc, BackupKind::Differential, "d".repeat(32));
        assert!(!on_inc.is_consistent(), "a differential builds on a full");
        let bad_ids = ChainLink { id: "A".repeat(32), ..full.clone() };
        assert!(!bad_ids.is_consistent());
        let json = serde_json::to_string(&inc).unwrap();
        assert!(json.contains("\"kind\":\"incremental\"") && json.contains("\"depth\":1"), "{json}");
    }

    proptest::proptest! {
        /// A server's answer is hostile too: whatever it says, what is kept is printable.
        #[test]
        fn any_identity_row_is_kept_printable(row in "(?s).{0,200}") {
            let id = ServerIdentity::parse_row(&row);
            for v in [&id.hostname, &id.datadir, &id.version, &id.server_uuid].into_iter().flatten() {
                proptest::prop_assert!(!v.chars().any(char::is_control));
            }
        }

        /// Whatever the description says, the statements printed hold each value as one
        /// literal: no quote or backslash inside one, nothing after the last statement.
        #[test]
        fn any_description_prints_safe_sql_or_nothing(
            file in "[a-z.\\\\' ;-]{0,12}(\\.[0-9]{6})?",
            gtid in proptest::option::of("[0-9a-f:,' ;\\\\-]{0,40}"),
            mysql: bool,
            position: u64,
        ) {
            let info = BackupInfo {
                flavor: Some(if mysql { "MySQL" } else { "MariaDB" }.into()),
                binlog: Some(BinlogPosition { file, position, gtid }),
                ..Default::default()
            };
            if let Ok(Some(sql)) = info.replication_statements() {
                for line in sql.lines().filter(|l| !l.starts_with("--")) {
                    proptest::prop_assert!(!line.contains('\\'), "{}", line);
                    proptest::prop_assert_eq!(line.matches('\'').count() % 2, 0, "{}", line);
                    proptest::prop_assert!(line.ends_with(';'), "{}", line);
                    proptest::prop_assert_eq!(line.matches(';').count(), 1, "{}", line);
                }
            }
        }
    }
}
