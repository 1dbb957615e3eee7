//! Text that jobs and their callers share: sizes, rates, times, and bytes from images made safe
//! to print; and sizes, rates and spans as people write them (a command line, a profile).

/// "1.23 GiB"
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// "123.4 MB/s" (decimal megabytes, as disk and network figures are quoted).
pub fn rate(bytes: u64, secs: f64) -> String {
    format!("{:.1} MB/s", bytes as f64 / secs.max(1e-9) / 1e6)
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

/// A byte count: "4096", "64K", "1M", "1MiB", "2G", "1T" (binary multiples).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("iB").trim_end_matches('B');
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        Some('T' | 't') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s}"))?;
    n.checked_mul(mult).ok_or_else(|| format!("too large: {s}"))
}

/// A chunk size (see [`parse_bytes`]) within the format's bounds.
pub fn parse_chunk_size(s: &str) -> Result<u32, String> {
    let v = parse_bytes(s)?;
    let (min, max) = (u64::from(coffer_format::MIN_CHUNK_SIZE), u64::from(coffer_format::MAX_CHUNK_SIZE));
    if !(min..=max).contains(&v) {
        return Err(format!("must be between {min} bytes and {} MiB", max >> 20));
    }
    Ok(v as u32)
}

/// A part size of object storage (see [`parse_bytes`]), as S3 takes it.
pub fn parse_part_size(s: &str) -> Result<u64, String> {
    coffer_store::part_size(parse_bytes(s)?)
}

/// An Argon2id memory limit (see [`parse_bytes`]) within the format's bounds, in KiB.
pub fn parse_kdf_max_memory(s: &str) -> Result<u32, String> {
    let v = parse_bytes(s)?;
    let kib = |k: u32| u64::from(k) << 10;
    let (min, max) = (kib(coffer_crypto::KdfParams::MIN_MEMORY_KIB), kib(coffer_crypto::KdfParams::MAX_MEMORY_KIB));
    if !(min..=max).contains(&v) {
        return Err("the Argon2id memory limit must be between 64M and 4G (a size such as 512M or 2G)".into());
    }
    Ok((v >> 10) as u32)
}

/// A rate in bytes per second ("50M" or "50M/s": 50 MiB/s); at least 1 KiB/s.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let v = parse_bytes(s.trim_end_matches("/s"))?;
    if v < 1024 {
        return Err("a rate below 1K per second".into());
    }
    Ok(v)
}

/// A span of time in seconds: `7d`, `36h`, `90m`, `2w`, `3600s`.
pub fn parse_span(s: &str) -> Result<i64, String> {
    let unit = s.chars().last().ok_or("empty")?;
    let n: i64 =
        s[..s.len() - unit.len_utf8()].parse().map_err(|_| format!("{s:?}: expected a number and s, m, h, d or w"))?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h, d or w")),
    };
    n.checked_mul(scale).filter(|v| *v > 0).ok_or_else(|| format!("{s:?}: out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(3 << 29), "1.50 GiB");
        assert_eq!(rate(250_000_000, 2.0), "125.0 MB/s");
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_795_780_800), "2026-11-27 12:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(escape(b"a\nb\x1b[0m\xff\\"), "a\\nb\\x1b[0m\\xff\\\\");
    }

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
    }

    #[test]
    fn sizes_rates_and_spans_as_people_write_them() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64K"), Ok(64 << 10));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes(" 2g "), Ok(2 << 30));
        assert_eq!(parse_bytes("1T"), Ok(1 << 40));
        assert_eq!(parse_bytes("1x"), Err("not a size: 1x".into()));
        assert_eq!(parse_bytes("99999999T"), Err("too large: 99999999T".into()));
        assert_eq!(parse_chunk_size("1M"), Ok(1 << 20));
        assert_eq!(parse_chunk_size("1K"), Err("must be between 4096 bytes and 64 MiB".into()));
        assert_eq!(parse_chunk_size("65M"), Err("must be between 4096 bytes and 64 MiB".into()));
        assert_eq!(parse_part_size("16M"), Ok(16 << 20));
        assert!(parse_part_size("1M").is_err());
        assert_eq!(parse_kdf_max_memory("512M"), Ok(512 << 10));
        assert!(parse_kdf_max_memory("1M").unwrap_err().starts_with("the Argon2id memory limit"));
        assert!(parse_kdf_max_memory("5G").is_err());
        assert_eq!(parse_rate("50M/s"), Ok(50 << 20));
        assert_eq!(parse_rate("1K"), Ok(1024));
        assert_eq!(parse_rate("10"), Err("a rate below 1K per second".into()));
        assert_eq!(parse_span("7d"), Ok(7 * 86_400));
        assert_eq!(parse_span("2w"), Ok(14 * 86_400));
        assert_eq!(parse_span("90m"), Ok(5400));
        assert_eq!(parse_span(""), Err("empty".into()));
        assert_eq!(parse_span("5x"), Err("\"5x\": the unit is s, m, h, d or w".into()));
        assert_eq!(parse_span("x"), Err("\"x\": expected a number and s, m, h, d or w".into()));
        assert_eq!(parse_span("0d"), Err("\"0d\": out of range".into()));
        assert_eq!(parse_span("7é"), Err("\"7é\": the unit is s, m, h, d or w".into()));
    }
}
