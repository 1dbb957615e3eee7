//! The gauges each job's run adds to its metrics (besides the run's own: see [`super::metrics`]),
//! from the job's summary.

use super::metrics::Run;
use crate::backup::BackupSummary;
use crate::repo::prune::PrunePlan;
use crate::restore::RestoreSummary;
use crate::server::drill::DrillReport;
use crate::transfer::SendSummary;
use coffer_mysql::meta::BackupKind;

/// A backup's gauges.
pub fn backup(m: &mut Run, s: &BackupSummary) {
    let (read, written) = (s.image.logical_bytes, s.image.image_bytes);
    m.set("coffer_bytes_read", "Bytes of file data backed up (file sizes, holes included).", read as f64);
    m.set("coffer_bytes_written", "Bytes of image written.", written as f64);
    m.set(
        "coffer_compression_ratio",
        "Bytes of file data backed up per byte of image written.",
        read as f64 / written.max(1) as f64,
    );
    m.set("coffer_files", "Files backed up.", s.image.files as f64);
    m.set("coffer_innodb_pages_checked", "InnoDB pages checked while backing up.", s.pages.pages as f64);
    m.set("coffer_innodb_pages_corrupt", "InnoDB pages found corrupt while backing up.", s.pages.corrupt as f64);
    let incremental = matches!(s.kind, Some(BackupKind::Incremental | BackupKind::Differential));
    m.set(
        "coffer_backup_incremental",
        "1 if the backup was incremental or differential, else 0.",
        f64::from(u8::from(incremental)),
    );
}

/// An image sent as it is.
pub fn send(m: &mut Run, s: &SendSummary) {
    m.set("coffer_bytes_read", "Bytes of image read.", s.sent as f64);
    m.set("coffer_bytes_written", "Bytes of image the receiver stored.", s.stored as f64);
}

/// A restore's gauges: the sums over the backups restored (one, or each of a chain).
pub fn restore<'a>(m: &mut Run, restores: impl IntoIterator<Item = &'a RestoreSummary>) {
    let (read, written, files) = restores
        .into_iter()
        .fold((0, 0, 0), |(r, w, f), s| (r + s.read.image_bytes, w + s.read.logical_bytes, f + s.files));
    m.set("coffer_bytes_read", "Bytes of image read.", read as f64);
    m.set("coffer_bytes_written", "Bytes of file data restored (file sizes, holes included).", written as f64);
    m.set("coffer_files", "Files restored.", files as f64);
}

/// A validation's gauges: pages checked and found corrupt, files holding corrupt pages, bytes
/// read.
pub fn validate(m: &mut Run, pages: u64, corrupt_pages: u64, corrupt_files: u64, bytes: u64) {
    m.set("coffer_innodb_pages_checked", "InnoDB pages checked.", pages as f64);
    m.set("coffer_innodb_pages_corrupt", "Corrupt InnoDB pages found.", corrupt_pages as f64);
    m.set("coffer_innodb_files_corrupt", "Files holding corrupt InnoDB pages.", corrupt_files as f64);
    m.set("coffer_bytes_read", "Bytes read.", bytes as f64);
}

/// A drill's gauges (its verdict too, when it failed).
pub fn drill(m: &mut Run, r: &DrillReport) {
    m.set("coffer_drill_passed", "1 if the last drill passed every step, else 0.", f64::from(u8::from(r.passed)));
    m.set("coffer_drill_restore_seconds", "Seconds the drill's restore and prepare took.", r.restore_seconds);
    m.set("coffer_drill_check_seconds", "Seconds the drill's server start, checks and shutdown took.", r.check_seconds);
    m.set("coffer_drill_tables_checked", "Tables CHECK TABLE passed in the last drill.", r.tables_checked as f64);
    m.set("coffer_drill_tables_failed", "Tables CHECK TABLE failed in the last drill.", r.tables_failed.len() as f64);
    m.set("coffer_innodb_pages_checked", "InnoDB pages checked.", r.pages_checked as f64);
    m.set("coffer_innodb_pages_corrupt", "Corrupt InnoDB pages found.", r.pages_corrupt as f64);
    m.set("coffer_bytes_restored", "Bytes of files restored.", r.needed_bytes as f64);
}

/// A prune's plan: the backups it keeps, none deleted yet, and the objects that could not be
/// read.
pub fn prune_plan(m: &mut Run, plan: &PrunePlan) {
    let kept = plan.backups.iter().filter(|(_, why, _)| !why.is_empty()).count();
    m.set("coffer_prune_backups_kept", "Backups the retention policy keeps.", kept as f64);
    m.set("coffer_prune_backups_deleted", "Backups deleted (0 with --dry-run).", 0.0);
    let unreadable = plan.backups.iter().filter(|(_, why, _)| why.iter().any(|w| w == "cannot be read")).count();
    m.set(
        "coffer_prune_backups_unreadable",
        "Objects under the prefix that could not be read (kept, with everything older).",
        unreadable as f64,
    );
}

/// What a prune deleted: backups, binary log segments, and their bytes.
pub fn pruned(m: &mut Run, backups: usize, segments: usize, bytes: u64) {
    m.set("coffer_prune_backups_deleted", "Backups deleted (0 with --dry-run).", backups as f64);
    m.set("coffer_prune_binlog_segments_deleted", "Binary log segments deleted.", segments as f64);
    m.set("coffer_prune_bytes_freed", "Bytes of backups and binary log segments deleted.", bytes as f64);
}
