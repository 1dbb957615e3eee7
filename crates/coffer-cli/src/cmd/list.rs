use super::{human, open_input, open_stream_input, rate, warn};
use crate::cli::{ListArgs, VerifyArgs};
use crate::progress::{Bar, CountingReader};
use anyhow::{anyhow, Result};
use coffer_format::{EntryKind, Header, IndexRecord};
use coffer_image::{open_stream, read_stream, ImageError, NullVisitor, ReadOptions};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Entries and header of an image: through the index for a file, by a full read for a pipe.
fn entries(image: &Path, args: &ListArgs, quiet: bool, threads: usize) -> Result<(Header, Vec<IndexRecord>, u64)> {
    let keys = crate::keys::unlocks(&args.key, quiet)?;
    if image != Path::new("-") {
        let idx = crate::store::open_indexed(image, &keys)?;
        for w in idx.image().warnings.iter().chain(&idx.image().notes) {
            warn(quiet, w);
        }
        return Ok((idx.image().header.clone(), idx.records().to_vec(), idx.len()));
    }
    let (mut input, _) = open_input(image)?;
    let opened = open_stream(&mut input, &keys)?;
    let summary = read_stream(&mut input, &opened, &mut NullVisitor, ReadOptions { threads, skip_data: true })?;
    Ok((opened.header, summary.records, summary.image_bytes))
}

/// Escapes bytes that would garble a terminal or a line-oriented consumer.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn mode_string(kind: EntryKind, mode: u32) -> String {
    let t = match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::HardLink => 'h',
        EntryKind::File => '-',
    };
    let mut s: Vec<char> = std::iter::once(t)
        .chain("rwxrwxrwx".chars().enumerate().map(|(i, c)| if mode & (1 << (8 - i)) != 0 { c } else { '-' }))
        .collect();
    // Set-uid, set-gid and sticky show in the execute columns, as ls shows them.
    for (bit, col, on, off) in [(0o4000, 3, 's', 'S'), (0o2000, 6, 's', 'S'), (0o1000, 9, 't', 'T')] {
        if mode & bit != 0 {
            s[col] = if s[col] == 'x' { on } else { off };
        }
    }
    s.into_iter().collect()
}

/// "2026-11-24 08:00:00" (UTC) from Unix seconds: days-from-civil, inverted.
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn owner(name: &[u8], id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        escape(name)
    }
}

/// One record per file: the parts of a file written in parts (xbstream backups) are folded into
/// its first record (size from the last part, chunks and data bytes summed). Sums that overflow
/// are the image's doing: it is refused as corrupt.
pub fn fold_parts(records: Vec<IndexRecord>) -> Result<Vec<IndexRecord>> {
    let mut out: Vec<IndexRecord> = Vec::with_capacity(records.len());
    let mut first: std::collections::HashMap<Vec<u8>, usize> = Default::default();
    for r in records {
        if r.meta.continues {
            if let Some(&i) = first.get(&r.meta.path) {
                let f = &mut out[i];
                let (Some(chunks), Some(data_bytes)) =
                    (f.chunks.checked_add(r.chunks), f.data_bytes.checked_add(r.data_bytes))
                else {
                    let detail = format!("the parts of {:?} add up to too much", String::from_utf8_lossy(&r.meta.path));
                    let at = coffer_image::Location { offset: r.frame_offset, ..Default::default() };
                    return Err(anyhow!(ImageError::Corrupt { at, detail }));
                };
                (f.size, f.chunks, f.data_bytes) = (r.size, chunks, data_bytes);
                continue;
            }
        }
        if r.meta.kind == EntryKind::File {
            first.insert(r.meta.path.clone(), out.len());
        }
        out.push(r);
    }
    Ok(out)
}

pub fn list(args: ListArgs, quiet: bool, threads: usize) -> Result<()> {
    let (header, records, image_bytes) = entries(&args.image, &args, quiet, threads)?;
    let records = fold_parts(records)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let result = if args.json {
        print_json(&mut out, &header, &records, image_bytes)
    } else {
        print_text(&mut out, &records, args.long)
    };
    match result.and_then(|()| out.flush()) {
        // `coffer list | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn print_text(out: &mut dyn Write, records: &[IndexRecord], long: bool) -> std::io::Result<()> {
    for r in records.iter().filter(|r| !r.meta.path.is_empty()) {
        let m = &r.meta;
        let path = escape(&m.path);
        if !long {
            writeln!(out, "{path}")?;
            continue;
        }
        let link = match m.kind {
            EntryKind::Symlink => format!(" -> {}", escape(&m.target)),
            EntryKind::HardLink => format!(" link to {}", escape(&m.target)),
            _ => String::new(),
        };
        writeln!(
            out,
            "{} {:>8}/{:<8} {:>14} {} {path}{link}",
            mode_string(m.kind, m.mode),
            owner(&m.uname, m.uid),
            owner(&m.gname, m.gid),
            r.size,
            utc(m.mtime_sec)
        )?;
    }
    Ok(())
}

fn print_json(out: &mut dyn Write, header: &Header, records: &[IndexRecord], image_bytes: u64) -> std::io::Result<()> {
    let entries: Vec<_> = records
        .iter()
        .map(|r| {
            let m = &r.meta;
            let mut e = json!({
                "path": String::from_utf8_lossy(&m.path),
                "type": m.kind.name(),
                "size": r.size,
                "stored_data_bytes": r.data_bytes,
                "chunks": r.chunks,
                "mode": format!("{:04o}", m.mode),
                "uid": m.uid,
                "gid": m.gid,
                "user": String::from_utf8_lossy(&m.uname),
                "group": String::from_utf8_lossy(&m.gname),
                "mtime": m.mtime_sec,
                "mtime_nsec": m.mtime_nsec,
            });
            if std::str::from_utf8(&m.path).is_err() {
                e["path_hex"] = json!(coffer_crypto::hex(&m.path));
            }
            if !m.target.is_empty() {
                e["target"] = json!(String::from_utf8_lossy(&m.target));
            }
            e
        })
        .collect();
    let doc = json!({
        "image": {
            "format_version": coffer_format::VERSION,
            "image_id": coffer_crypto::hex(&header.image_id),
            "cipher": header.suite.name(),
            "compression": header.codec.name(),
            "level": header.level,
            "chunk_size": header.chunk_size,
            "created": header.created,
            "key_slots": header.slots.iter().filter(|s| !s.is_empty()).count(),
            "bytes": image_bytes,
        },
        "entries": entries,
    });
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::other)?;
    writeln!(out)
}

pub fn verify(args: VerifyArgs, quiet: bool, threads: usize) -> Result<()> {
    let started = Instant::now();
    let result = verify_image(&args, quiet, threads);
    let secs = started.elapsed().as_secs_f64();
    match (&result, args.json) {
        (Ok(s), true) => println!(
            "{}",
            json!({"ok": true, "image": args.image, "entries": s.entries, "files": s.files, "bytes": s.logical_bytes, "data_bytes": s.data_bytes, "image_bytes": s.image_bytes, "seconds": secs})
        ),
        (Ok(s), false) => {
            if !quiet {
                println!(
                    "coffer: {} is intact: {} entries, {} files, {} of data, every frame authenticated ({} image bytes) in {:.1} s, {}",
                    args.image.display(),
                    s.entries,
                    s.files,
                    human(s.logical_bytes),
                    s.image_bytes,
                    secs,
                    rate(s.image_bytes, secs)
                );
            }
        }
        (Err(e), true) => {
            println!(
                "{}",
                json!({"ok": false, "image": args.image, "error": format!("{e:#}"), "exit_code": crate::exit::code(e)})
            );
        }
        (Err(_), false) => {}
    }
    result.map(|_| ())
}

fn verify_image(args: &VerifyArgs, quiet: bool, threads: usize) -> Result<coffer_image::ReadSummary> {
    let keys = crate::keys::unlocks(&args.key, quiet)?;
    let (file, len) = open_stream_input(&args.image)?;
    let bar = Bar::new(quiet, len, "verify");
    let mut input = CountingReader { inner: file, bar: bar.clone() };
    let image = open_stream(&mut input, &keys)?;
    let summary = read_stream(&mut input, &image, &mut NullVisitor, ReadOptions { threads, skip_data: false });
    bar.finish();
    let summary = summary?;
    for note in &image.notes {
        super::warn(quiet, note);
    }
    if let Some(w) = image.warnings.first() {
        // The data is intact and readable, but a damaged header copy is damage all the same.
        return Err(anyhow!(ImageError::Corrupt { at: coffer_image::Location::default(), detail: w.clone() }));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_996_800 + 3661), "2026-11-30 01:01:01");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn escapes() {
        assert_eq!(escape(b"a b\n\xff\\"), "a b\\n\\xff\\\\");
        assert_eq!(mode_string(EntryKind::Dir, 0o750), "drwxr-x---");
        assert_eq!(mode_string(EntryKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(EntryKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(EntryKind::File, 0o2640), "-rw-r-S---");
    }
}
