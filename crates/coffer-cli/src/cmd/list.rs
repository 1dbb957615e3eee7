use super::{human, rate, refuse_terminal};
use crate::cli::{ListArgs, VerifyArgs};
use anyhow::Result;
use coffer::text::{escape, utc};
use coffer::Location;
use coffer_format::{EntryKind, Header, IndexRecord};
use serde_json::json;
use std::io::Write;
use std::time::Instant;

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

fn owner(name: &[u8], id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        escape(name)
    }
}

pub fn list(args: ListArgs, quiet: bool, threads: usize) -> Result<()> {
    let image = Location::from_path(&args.image);
    refuse_terminal(&image)?;
    let coffer::read::Listing { header, records, image_bytes } =
        coffer::read::list(&image, &args.key.sources(), &crate::report::env(quiet, threads))?;
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
                "frame_offset": r.frame_offset,
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
            "format_version": header.version,
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
    if args.chain {
        return verify_chain(&args, quiet, threads);
    }
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

/// `verify --chain`: the chain resolved and its links checked, then every image verified.
fn verify_chain(args: &VerifyArgs, quiet: bool, threads: usize) -> Result<()> {
    let image = Location::from_path(&args.image);
    if matches!(image, Location::Stdio) {
        return Err(crate::exit::usage("--chain needs the image as a file or object (its chain is found beside it)"));
    }
    let env = crate::report::env(quiet, threads);
    let keys = args.key.sources();
    let bases: Vec<Location> = args.base.iter().map(|b| Location::from_path(b)).collect();
    let plan = coffer::server::prepare::plan(&image, &bases, &keys, &env)?;
    let Some(chain) = &plan.chain else {
        // A full backup (or no server backup) is a chain of its own.
        return verify(VerifyArgs { chain: false, ..args.clone() }, quiet, threads);
    };
    if !quiet && !args.json {
        eprintln!("coffer: the chain of {} backups is linked (ids, server, LSNs)", chain.len());
    }
    let mut rows = Vec::new();
    let mut failed = None;
    for backup in chain {
        let (location, what) = (&backup.location, backup.what());
        let started = Instant::now();
        let result = plan.verify(backup, &env);
        let secs = started.elapsed().as_secs_f64();
        match &result {
            Ok(s) => {
                rows.push(json!({"ok": true, "image": location.shown(), "kind": what, "entries": s.entries, "image_bytes": s.image_bytes, "seconds": secs}));
                if !quiet && !args.json {
                    println!(
                        "coffer: {} ({what}) is intact: {} entries, {} image bytes, {:.1} s",
                        location.shown(),
                        s.entries,
                        s.image_bytes,
                        secs
                    );
                }
            }
            Err(e) => {
                rows.push(json!({"ok": false, "image": location.shown(), "kind": what, "error": e.one_line(), "exit_code": e.exit_code()}));
                if !args.json {
                    eprintln!("coffer: {} ({what}): {}", location.shown(), e.one_line());
                }
            }
        }
        if let Err(e) = result {
            failed.get_or_insert(e);
        }
    }
    if args.json {
        println!("{}", json!({"ok": failed.is_none(), "chain": rows}));
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn verify_image(args: &VerifyArgs, quiet: bool, threads: usize) -> Result<coffer_image::ReadSummary> {
    let image = Location::from_path(&args.image);
    refuse_terminal(&image)?;
    Ok(coffer::read::verify(&image, &args.key.sources(), &crate::report::env(quiet, threads))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(mode_string(EntryKind::Dir, 0o750), "drwxr-x---");
        assert_eq!(mode_string(EntryKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(EntryKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(EntryKind::File, 0o2640), "-rw-r-S---");
    }
}
