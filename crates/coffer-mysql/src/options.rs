//! The option files coffer writes for the programs it starts on a restored backup: the engine's
//! prepare, and a private server (a drill's, a point-in-time replay's). Both start from the
//! backup's own `backup-my.cnf`, which comes from the image and is checked line by line, and
//! end with the user's `--prepare-option`s.

use crate::engine::{io, EngineError};
use std::path::Path;

/// The backup's own options, in the restored directory.
pub const BACKUP_OPTIONS: &str = "backup-my.cnf";

/// An option of the engine's prepare given by the user (`--prepare-option NAME=VALUE`), such as
/// where this host keeps the encryption key file (`file_key_management_filename=PATH`). It goes
/// into the option file coffer writes for the prepare, in place of the backup's own value, and
/// never onto a command line (a value may be a secret: `file_key_management_filekey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareOption {
    name: String,
    value: String,
}

impl PrepareOption {
    /// The option's name, `-` spelled `_`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

impl std::str::FromStr for PrepareOption {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, EngineError> {
        let bad = |why| EngineError::PrepareOption(s.to_owned(), why);
        let (name, value) = s.split_once('=').ok_or_else(|| bad("expected NAME=VALUE"))?;
        let name = name.trim().trim_start_matches("--");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(bad("the name must be letters, digits, '_' and '-'"));
        }
        if value.chars().any(char::is_control) {
            return Err(bad("the value must not hold control characters (a new line would start another option)"));
        }
        Ok(Self { name: name.to_ascii_lowercase().replace('-', "_"), value: value.to_owned() })
    }
}

/// The option file for `ENGINE --prepare` on the restored backup in `dir`: its `backup-my.cnf`,
/// every line checked, with `user`'s options in place of its values (and after them).
///
/// `backup-my.cnf` comes from the image, and an image need not come from a server coffer backed
/// up (an image sealed to a public key can be written by anyone who has it). The engine loads
/// the plugin that the file names from the directory it names, chdirs into `dir`, and writes the
/// files it is told to: so no option that names a path or a library passes unless it is safe.
/// The plugin directory must be an absolute path outside `dir`, owned by root (or this user)
/// and writable by no one else; libraries are bare names in it; data files are plain names in
/// `dir`; any other value of the server's options is a word (no `/`), except the settings of
/// the key management plugin (`file_key_management_filename` and the like), which are what the
/// server itself had. `!include` is refused. The engine is no server: it ignores the server's
/// options it does not use (`init_file`, `general_log_file`, ... open nothing in a prepare),
/// which is why a word passes here; a private server gets [`server_options`] instead.
pub fn prepare_options(dir: &Path, user: &[PrepareOption]) -> Result<String, EngineError> {
    let backup = BackupOptions::read(dir)?;
    let overridden = |name: &str| user.iter().any(|o| base(&o.name) == base(name));
    // The plugins the backup loads: their own settings are theirs.
    let mut plugins = Vec::new();
    for line in backup.lines.iter().filter(|l| !overridden(&l.name)) {
        for (plugin, _) in backup.plugins(line)? {
            plugins.push(format!("{plugin}_"));
        }
    }
    let mut out = format!(
        "# Written by coffer for the prepare of {}: its {BACKUP_OPTIONS}, checked, and --prepare-option.\n[mysqld]\n",
        dir.display()
    );
    for line in backup.lines.iter().filter(|l| !overridden(&l.name)) {
        if let Some(v) = &line.value {
            check_backup_option(dir, base(&line.name), v, &plugins).map_err(|why| backup.instead(line, why))?;
        }
        push_option(&mut out, &line.name, line.value.as_deref());
    }
    for o in user {
        push_option(&mut out, &o.name, Some(&o.value));
    }
    key_file_exists(&plugins, user, &backup.lines)?;
    Ok(out)
}

/// The option file of a private server on a restored backup, and what it leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// The option file's text.
    pub text: String,
    /// The options of `backup-my.cnf` left out, as written there (a plugin not loaded as
    /// `plugin_load (NAME)`), once each.
    pub left_out: Vec<String>,
}

/// The options of `backup-my.cnf` a private server takes: what InnoDB needs to open the files,
/// and what decrypts them (with the settings of the key management plugins, and the
/// `innodb_encrypt_*` and `encrypt_*` switches).
const SERVER_OPTIONS: [&str; 11] = [
    "innodb_page_size",
    "innodb_data_file_path",
    "innodb_log_file_size",
    "innodb_log_files_in_group",
    "innodb_log_group_home_dir",
    "innodb_undo_directory",
    "innodb_undo_tablespaces",
    "innodb_checksum_algorithm",
    "innodb_compression_level",
    "innodb_compression_algorithm",
    "innodb_default_encryption_key_id",
];

/// A plugin a private server may load from the image's word: a key management plugin, or a
/// compression provider (pages compressed with lz4, lzma, ... need theirs).
fn server_plugin(name: &str) -> bool {
    name.ends_with("_key_management") || name.starts_with("provider_")
}

/// The option file of a private server (a drill's, a point-in-time replay's) on the restored
/// backup in `dir`: of its `backup-my.cnf` only [`SERVER_OPTIONS`], the key management and
/// compression plugins and their settings, each checked as for the prepare (the log and undo
/// directories must be the datadir itself); every other option is left out and named in
/// [`ServerOptions::left_out`]. A server runs what its options say (`init_file` is SQL run at
/// start; `general_log_file` is a file it writes), so nothing else of an image reaches it; its
/// plugin directory is its own. The user's options follow, unchecked. Every option of the
/// image is written `loose_`: one that this server's version does not know is ignored.
pub fn server_options(dir: &Path, user: &[PrepareOption]) -> Result<ServerOptions, EngineError> {
    let backup = BackupOptions::read(dir)?;
    let overridden = |name: &str| user.iter().any(|o| base(&o.name) == base(name));
    let mut left_out = Vec::new();
    // The plugins loaded: by the user, and those of the image a server may load.
    let mut plugins: Vec<String> = user
        .iter()
        .filter(|o| matches!(base(&o.name), "plugin_load" | "plugin_load_add"))
        .flat_map(|o| o.value.split(';').map(|i| i.split('=').next().unwrap_or_default().trim_end_matches(".so")))
        .filter(|p| !p.is_empty())
        .map(|p| format!("{}_", p.to_ascii_lowercase().replace('-', "_")))
        .collect();
    // (line, its name without `loose_`, its value: of plugin_load, the plugins kept)
    let mut kept: Vec<(&Line, &str, Option<String>)> = Vec::new();
    for line in backup.lines.iter().filter(|l| !overridden(&l.name)) {
        let name = line.name.strip_prefix("loose_").unwrap_or(&line.name);
        if !matches!(name, "plugin_load" | "plugin_load_add") {
            kept.push((line, name, line.value.clone()));
            continue;
        }
        let mut items = Vec::new();
        for (plugin, item) in backup.plugins(line)? {
            if server_plugin(&plugin) {
                plugins.push(format!("{plugin}_"));
                items.push(item);
            } else {
                left_out.push((line.n, format!("{} ({plugin})", line.name)));
            }
        }
        if !items.is_empty() {
            kept.push((line, name, Some(items.join(";"))));
        }
    }
    let mut body = String::new();
    for (line, name, value) in kept {
        let switch = name.starts_with("innodb_encrypt_") || name.starts_with("encrypt_");
        let takes = switch
            || (value.is_some()
                && (SERVER_OPTIONS.contains(&name)
                    || matches!(name, "plugin_load" | "plugin_load_add")
                    || plugins.iter().any(|p| name.starts_with(p.as_str()))));
        if !takes {
            left_out.push((line.n, line.name.clone()));
            continue;
        }
        if let Some(v) = &value {
            check_server_option(dir, name, v, &plugins).map_err(|why| backup.instead(line, why))?;
        }
        push_option(&mut body, &format!("loose_{name}"), value.as_deref());
    }
    for o in user {
        push_option(&mut body, &o.name, Some(&o.value));
    }
    key_file_exists(&plugins, user, &backup.lines)?;
    // In the file's order, once each.
    left_out.sort_by_key(|(n, _)| *n);
    let mut seen = std::collections::HashSet::new();
    let left_out: Vec<String> = left_out.into_iter().map(|(_, name)| name).filter(|n| seen.insert(n.clone())).collect();
    let mut text = format!(
        "# Written by coffer for a private server on {}: what InnoDB needs of its {BACKUP_OPTIONS}, checked, \
         and --prepare-option.\n",
        dir.display()
    );
    if !left_out.is_empty() {
        text.push_str(&format!("# Left out of {BACKUP_OPTIONS}: {}\n", left_out.join(", ")));
    }
    text.push_str("[mysqld]\n");
    text.push_str(&body);
    Ok(ServerOptions { text, left_out })
}

/// Whether a value of the image's `backup-my.cnf` may reach a private server; why not.
fn check_server_option(dir: &Path, name: &str, value: &str, plugins: &[String]) -> Result<(), String> {
    match name {
        "innodb_log_group_home_dir" | "innodb_undo_directory" if value != "." && value != "./" => {
            Err(format!("{name} = {value:?} is not the datadir (./)"))
        }
        _ => check_backup_option(dir, name, value, plugins),
    }
}

/// A line of `backup-my.cnf`: its number, its name (`-` spelled `_`), its value unquoted.
#[derive(Debug)]
struct Line {
    n: usize,
    name: String,
    value: Option<String>,
}

/// `backup-my.cnf` of a restored backup, parsed: one `[mysqld]` group of options, nothing
/// that reads other files.
#[derive(Debug)]
struct BackupOptions {
    file: std::path::PathBuf,
    lines: Vec<Line>,
}

impl BackupOptions {
    /// The file in `dir` (none: no options), at most 1 MiB, not through a symbolic link.
    fn read(dir: &Path) -> Result<Self, EngineError> {
        let file = dir.join(BACKUP_OPTIONS);
        let text = match std::fs::symlink_metadata(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(format!("read {}", file.display()))(e)),
            Ok(m) if !m.is_file() || m.len() > 1 << 20 => {
                return Err(EngineError::BackupOptions {
                    file,
                    line: 0,
                    reason: "not a regular file of at most 1 MiB".into(),
                })
            }
            Ok(_) => std::fs::read_to_string(&file).map_err(io(format!("read {}", file.display())))?,
        };
        let mut backup = Self { file, lines: Vec::new() };
        for (n, raw) in text.lines().enumerate() {
            let n = n + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('!') {
                return Err(backup.refuse(n, format!("{line:?} reads other files")));
            }
            if let Some(group) = line.strip_prefix('[') {
                if group.trim_end_matches(']').trim() != "mysqld" {
                    return Err(backup.refuse(n, format!("the group {line:?} (a backup has only [mysqld])")));
                }
                continue;
            }
            let (name, value) = match line.split_once('=') {
                Some((k, v)) => (k.trim(), Some(unquote(v.trim()).to_owned())),
                None => (line, None),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(backup.refuse(n, format!("{name:?} is not an option name")));
            }
            backup.lines.push(Line { n, name: name.to_ascii_lowercase().replace('-', "_"), value });
        }
        Ok(backup)
    }

    fn refuse(&self, line: usize, reason: String) -> EngineError {
        EngineError::BackupOptions { file: self.file.clone(), line, reason }
    }

    /// A value coffer does not pass: the user may give one instead.
    fn instead(&self, line: &Line, why: String) -> EngineError {
        self.refuse(
            line.n,
            format!(
                "{why}: coffer passes no path or library from an image to a program it starts unchecked; \
                 set it yourself with --prepare-option {}=VALUE",
                line.name
            ),
        )
    }

    /// The plugins a `plugin_load` or `plugin_load_add` line loads (none for another line):
    /// each plugin's name (`-` spelled `_`) and its item (`NAME=LIBRARY` or `LIBRARY`), both
    /// bare names in the plugin directory.
    fn plugins<'a>(&self, line: &'a Line) -> Result<Vec<(String, &'a str)>, EngineError> {
        if !matches!(base(&line.name), "plugin_load" | "plugin_load_add") {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in line.value.as_deref().unwrap_or_default().split(';').filter(|i| !i.is_empty()) {
            let (plugin, library) = match item.split_once('=') {
                Some((p, l)) => (p, l),
                None => (item.trim_end_matches(".so"), item),
            };
            if !bare_name(library) || !bare_name(plugin) {
                return Err(self.instead(line, format!("{item:?} is not a library in the plugin directory")));
            }
            out.push((plugin.to_ascii_lowercase().replace('-', "_"), item));
        }
        Ok(out)
    }
}

/// file_key_management reads its keys when it loads: a key file missing here fails a prepare
/// ("Encryption key is not found") or a server; say what to do instead.
fn key_file_exists(plugins: &[String], user: &[PrepareOption], lines: &[Line]) -> Result<(), EngineError> {
    const KEY_FILE: &str = "file_key_management_filename";
    if plugins.iter().any(|p| p == "file_key_management_") || user.iter().any(|o| o.name == KEY_FILE) {
        let named = user
            .iter()
            .rev()
            .find(|o| base(&o.name) == KEY_FILE)
            .map(|o| o.value.clone())
            .or_else(|| lines.iter().rev().find(|l| base(&l.name) == KEY_FILE).and_then(|l| l.value.clone()));
        if let Some(path) = named.filter(|p| p.starts_with('/')) {
            if !Path::new(&path).exists() {
                return Err(EngineError::KeyFileMissing(path.into(), KEY_FILE));
            }
        }
    }
    Ok(())
}

/// An option's name without the prefixes that change how its value is read (`loose_`, `skip_`,
/// `enable_`, `disable_`, `maximum_`): what it sets.
fn base(name: &str) -> &str {
    let name = name.strip_prefix("loose_").unwrap_or(name);
    ["skip_", "enable_", "disable_", "maximum_"].iter().find_map(|p| name.strip_prefix(p)).unwrap_or(name)
}

/// A value in matching quotes without them.
fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// A file name, not a path: letters, digits, `_`, `-`, `.`, not starting with a dot.
fn bare_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// Whether a value of the image's `backup-my.cnf` may reach the engine; why not.
fn check_backup_option(dir: &Path, name: &str, value: &str, plugins: &[String]) -> Result<(), String> {
    match name {
        "plugin_dir" => trusted_plugin_dir(dir, value),
        "plugin_load" | "plugin_load_add" => Ok(()), // checked with the plugins
        "innodb_data_file_path" | "innodb_temp_data_file_path" => {
            for spec in value.split(';').filter(|s| !s.is_empty()) {
                let mut parts = spec.split(':');
                let file = parts.next().unwrap_or_default();
                let size_like = |p: &str| {
                    p == "autoextend"
                        || p == "max"
                        || (!p.is_empty()
                            && p.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't'])
                                .bytes()
                                .all(|b| b.is_ascii_digit()))
                };
                if !bare_name(file) || !parts.all(size_like) {
                    return Err(format!("{name} {spec:?} is not a file in the backup's directory"));
                }
            }
            Ok(())
        }
        "innodb_undo_directory" if value == "." || value == "./" => Ok(()),
        _ if plugins.iter().any(|p| name.starts_with(p.as_str())) => {
            if value.chars().any(|c| c.is_control() || "\"'\\#".contains(c)) {
                Err(format!("the value of {name} has a quote, '\\', '#' or a control character"))
            } else {
                Ok(())
            }
        }
        _ => {
            let word =
                !value.starts_with('.') && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:,+".contains(&b));
            if word {
                Ok(())
            } else {
                Err(format!("{name} = {value:?} is not a plain value (it may name a path)"))
            }
        }
    }
}

/// A plugin directory from an image: absolute, outside the restored backup, and neither it nor
/// any directory above it writable by anyone but root or this user (sticky directories aside,
/// above it), so that only what an administrator installed there can be loaded.
fn trusted_plugin_dir(dir: &Path, value: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !value.starts_with('/') {
        return Err(format!("plugin_dir {value:?} is not an absolute path"));
    }
    let real = std::fs::canonicalize(value).map_err(|e| format!("plugin_dir {value:?}: {e}"))?;
    if std::fs::canonicalize(dir).is_ok_and(|d| real.starts_with(d)) {
        return Err(format!("plugin_dir {value:?} is inside the restored backup"));
    }
    let me = nix::unistd::geteuid().as_raw();
    for (i, d) in real.ancestors().enumerate() {
        let m = std::fs::metadata(d).map_err(|e| format!("plugin_dir {value:?}: {}: {e}", d.display()))?;
        let sticky = i > 0 && m.mode() & 0o1000 != 0;
        if !m.is_dir() || (m.uid() != 0 && m.uid() != me) || (m.mode() & 0o022 != 0 && !sticky) {
            return Err(format!(
                "plugin_dir {value:?}: {} is not a directory that only root or this user may write to",
                d.display()
            ));
        }
    }
    Ok(())
}

/// `name="value"` (or a bare `name`), escaped as option files read it.
fn push_option(out: &mut String, name: &str, value: Option<&str>) {
    match value {
        Some(v) => out.push_str(&format!("{name}=\"{}\"\n", v.replace('\\', "\\\\").replace('"', "\\\""))),
        None => out.push_str(&format!("{name}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What mariabackup 10.11 writes for a server with file_key_management.
    const BACKUP_MY_CNF: &str = "# This options file was generated by innobackupex.\n\n# The server\n[mysqld]\n\
        innodb_checksum_algorithm=crc32\ninnodb_data_file_path=ibdata1:12M:autoextend\n\
        innodb_log_file_size=100663296\ninnodb_page_size=16384\ninnodb_undo_directory=./\n\
        innodb_undo_tablespaces=0\ninnodb_compression_level=6\n\nplugin_dir=\"/usr/lib\"\n\
        plugin_load=file_key_management=file_key_management\nfile_key_management_encryption_algorithm=aes_ctr\n\
        file_key_management_filekey=\nfile_key_management_filename=/nonexistent/keys.txt\n\
        innodb_encrypt_log=1\ninnodb_encrypt_tables=ON\n";

    fn backup(text: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(BACKUP_OPTIONS), text).unwrap();
        d
    }

    fn opt(s: &str) -> PrepareOption {
        s.parse().unwrap()
    }

    #[test]
    fn the_backups_options_pass_with_the_users_in_place_of_its_own() {
        let d = backup(BACKUP_MY_CNF);
        // The key file is not where the backup says: a clear error naming the option.
        let err = prepare_options(d.path(), &[]).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/keys.txt") && err.contains("--prepare-option file_key_management_filename=")
        );
        let keys = d.path().join("k.txt");
        std::fs::write(&keys, "1;00\n").unwrap();
        let user = [opt(&format!("file-key-management-filename={}", keys.display())), opt("x=a \"q\" \\ b")];
        let text = prepare_options(d.path(), &user).unwrap();
        assert!(text.contains("\n[mysqld]\ninnodb_checksum_algorithm=\"crc32\"\n"), "{text}");
        assert!(text.contains("plugin_dir=\"/usr/lib\"\nplugin_load=\"file_key_management=file_key_management\"\n"));
        assert!(!text.contains("nonexistent"), "{text}");
        assert!(
            text.ends_with(&format!("file_key_management_filename=\"{}\"\nx=\"a \\\"q\\\" \\\\ b\"\n", keys.display()))
        );
        // No backup-my.cnf: the user's options alone.
        let empty = tempfile::tempdir().unwrap();
        assert!(prepare_options(empty.path(), &[opt("a=b")]).unwrap().ends_with("[mysqld]\na=\"b\"\n"));
    }

    #[test]
    fn paths_and_libraries_from_an_image_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        let inside = target.path().display().to_string();
        let writable = outside.path().join("w");
        std::fs::create_dir(&writable).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o777)).unwrap();
        let cases = [
            "!include /etc/mysql/my.cnf".to_string(),
            "[client]\nuser=x".into(),
            "plugin_dir=./".into(),
            format!("plugin_dir={inside}"),
            format!("plugin_dir={}", writable.display()),
            "plugin_dir=/nonexistent".into(),
            "plugin_load=evil=../evil.so".into(),
            "loose-plugin-load-add=/tmp/evil.so".into(),
            "innodb_data_file_path=/dev/sda:10Gnewraw".into(),
            "innodb_data_file_path=../ibdata1:12M".into(),
            "innodb_undo_directory=/var/lib/mysql".into(),
            "innodb_log_group_home_dir=/var/lib/mysql".into(),
            "datadir=..".into(),
            "tmpdir=\"/tmp\"".into(),
            "plugin_load=file_key_management\nfile_key_management_filekey=a#b".into(),
            "bad name=1".into(),
        ];
        for case in cases {
            std::fs::write(target.path().join(BACKUP_OPTIONS), format!("[mysqld]\n{case}\n")).unwrap();
            let err = prepare_options(target.path(), &[]).expect_err(&case).to_string();
            assert!(err.contains("backup-my.cnf, line "), "{case}: {err}");
        }
        // Given by the user instead, a refused value is not read from the image at all.
        std::fs::write(target.path().join(BACKUP_OPTIONS), "[mysqld]\nplugin_dir=/nonexistent\n").unwrap();
        let text = prepare_options(target.path(), &[opt("plugin-dir=/opt/plugins")]).unwrap();
        assert!(text.ends_with("[mysqld]\nplugin_dir=\"/opt/plugins\"\n"), "{text}");
        // A symbolic link is not followed.
        std::fs::remove_file(target.path().join(BACKUP_OPTIONS)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", target.path().join(BACKUP_OPTIONS)).unwrap();
        assert!(prepare_options(target.path(), &[]).is_err());
    }

    /// The body of an option file (what follows `[mysqld]`).
    fn body(text: &str) -> &str {
        text.split_once("[mysqld]\n").map_or("", |(_, b)| b)
    }

    #[test]
    fn a_private_server_takes_only_what_innodb_needs_of_the_image() {
        let keys = tempfile::NamedTempFile::new().unwrap();
        let hostile = "init_file=evil.sql\ngeneral_log_file=general.log\ngeneral_log=1\n\
            slow_query_log_file=slow.log\nslow_query_log\nskip_grant_tables\nskip-networking\n\
            plugin_maturity=experimental\nplugin_load_add=server_audit\nserver_audit_file_path=audit.log\n\
            loose-innodb-encrypt-tables=FORCE\nsecure_file_priv=\"\"\nlocal_infile=1\nuser=root\n\
            skip_innodb_encrypt_log\nfile_key_management_filename=/nonexistent/keys.txt\n";
        let d = backup(&format!("{BACKUP_MY_CNF}{hostile}"));
        let user = [opt(&format!("file_key_management_filename={}", keys.path().display()))];
        let s = server_options(d.path(), &user).unwrap();
        let got = body(&s.text);
        let want = format!(
            "loose_innodb_checksum_algorithm=\"crc32\"\nloose_innodb_data_file_path=\"ibdata1:12M:autoextend\"\n\
             loose_innodb_log_file_size=\"100663296\"\nloose_innodb_page_size=\"16384\"\n\
             loose_innodb_undo_directory=\"./\"\nloose_innodb_undo_tablespaces=\"0\"\n\
             loose_innodb_compression_level=\"6\"\n\
             loose_plugin_load=\"file_key_management=file_key_management\"\n\
             loose_file_key_management_encryption_algorithm=\"aes_ctr\"\nloose_file_key_management_filekey=\"\"\n\
             loose_innodb_encrypt_log=\"1\"\nloose_innodb_encrypt_tables=\"ON\"\n\
             loose_innodb_encrypt_tables=\"FORCE\"\nfile_key_management_filename=\"{}\"\n",
            keys.path().display()
        );
        assert_eq!(got, want, "{}", s.text);
        assert_eq!(
            s.left_out,
            [
                "plugin_dir",
                "init_file",
                "general_log_file",
                "general_log",
                "slow_query_log_file",
                "slow_query_log",
                "skip_grant_tables",
                "skip_networking",
                "plugin_maturity",
                "plugin_load_add (server_audit)",
                "server_audit_file_path",
                "secure_file_priv",
                "local_infile",
                "user",
                "skip_innodb_encrypt_log",
            ]
        );
        assert!(s.text.contains("# Left out of backup-my.cnf: plugin_dir, init_file, "), "{}", s.text);
        // The user's plugin directory and options pass; the image's key file must exist.
        let s = server_options(d.path(), &[opt("plugin-dir=/opt/p"), opt("init_file=/etc/mine.sql")]);
        assert!(matches!(s, Err(EngineError::KeyFileMissing(..))), "{s:?}");
        let empty = tempfile::tempdir().unwrap();
        let s = server_options(empty.path(), &[opt("plugin-dir=/opt/p"), opt("innodb_page_size=4k")]).unwrap();
        assert_eq!(body(&s.text), "plugin_dir=\"/opt/p\"\ninnodb_page_size=\"4k\"\n");
        assert!(s.left_out.is_empty());
        // A plugin the user loads has its settings from the image.
        let d = backup("[mysqld]\nhashicorp_key_management_vault_url=https://vault:8200/v1/mariadb\n");
        let s = server_options(d.path(), &[opt("plugin_load_add=hashicorp_key_management")]).unwrap();
        assert!(body(&s.text).starts_with("loose_hashicorp_key_management_vault_url="), "{}", s.text);
    }

    #[test]
    fn a_private_server_refuses_what_prepare_refuses_and_other_directories() {
        let cases = [
            "!include /etc/mysql/my.cnf",
            "!includedir /etc/mysql/conf.d",
            "[client]\nuser=x",
            "bad name=1",
            "innodb_undo_directory=undo",
            "innodb_undo_directory=/var/lib/mysql",
            "innodb_log_group_home_dir=/var/lib/mysql",
            "innodb_log_group_home_dir=logs",
            "innodb_data_file_path=../ibdata1:12M",
            "innodb_data_file_path=/dev/sda:10Gnewraw",
            "innodb_page_size=../x",
            "plugin_load=evil=../evil.so",
            "loose-plugin-load-add=/tmp/evil.so",
            "plugin_load=file_key_management\nfile_key_management_filekey=a#b",
        ];
        let d = tempfile::tempdir().unwrap();
        for case in cases {
            std::fs::write(d.path().join(BACKUP_OPTIONS), format!("[mysqld]\n{case}\n")).unwrap();
            let err = server_options(d.path(), &[]).expect_err(case).to_string();
            assert!(err.contains("backup-my.cnf, line "), "{case}: {err}");
        }
        // A plugin directory, a path of the server's, a bare name: left out, never refused.
        std::fs::write(
            d.path().join(BACKUP_OPTIONS),
            "[mysqld]\nplugin_dir=/nonexistent\ntmpdir=/tmp\ndatadir=..\nlog_error=/etc/x\nskip_symbolic_links\n",
        )
        .unwrap();
        let s = server_options(d.path(), &[]).unwrap();
        assert_eq!(body(&s.text), "");
        assert_eq!(s.left_out, ["plugin_dir", "tmpdir", "datadir", "log_error", "skip_symbolic_links"]);
    }

    #[test]
    fn user_options_are_names_and_one_line_values() {
        assert_eq!(opt("--File-Key=a=b").name(), "file_key");
        assert_eq!(opt("--File-Key=a=b").value(), "a=b");
        for bad in ["novalue", "=x", "a b=c", "a=b\nplugin_dir=/tmp", "a=\0"] {
            assert!(bad.parse::<PrepareOption>().is_err(), "{bad:?}");
        }
    }
}
