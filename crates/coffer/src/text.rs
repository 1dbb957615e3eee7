//! Text that jobs and their callers share: sizes, rates, times, and bytes from images made safe
//! to print.

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
}
