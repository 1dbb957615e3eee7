//! Names coffer gives: random ids, and the names of backups written under a prefix (which
//! carry their start time).

use crate::error::{Error, Result};

/// A new backup id: 128 random bits, in hexadecimal.
pub fn new_id() -> Result<String> {
    let mut id = [0u8; 16];
    coffer_crypto::random(&mut id).map_err(|e| Error::msg(format!("cannot make a backup id: {e}")))?;
    Ok(coffer_crypto::hex(&id))
}

/// The name of a backup written under a prefix: its start time, UTC, and 8 random hex digits,
/// so that backups started in the same second (two hosts, two timers) have names of their own
/// ("2026-11-24T08-00-00Z-1a2b3c4d.coffer"). Names sort by time.
pub(crate) fn backup_name() -> Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let time = crate::text::utc(now.as_secs() as i64).replace(' ', "T").replace(':', "-");
    Ok(format!("{time}Z-{}.coffer", &new_id()?[..8]))
}

/// The time in a name like `2026-11-24T08-00-00Z.coffer` (or, as coffer names backups since
/// two may start in one second, `2026-11-24T08-00-00Z-1a2b3c4d.coffer`).
pub(crate) fn name_time(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".coffer")?;
    let t = match stem.rsplit_once("Z-") {
        Some((t, tag)) if tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit()) => t,
        _ => stem.strip_suffix('Z')?,
    };
    let n: Vec<i64> = t.split(['-', 'T']).map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [y, mo, d, h, mi, s] = n[..] else { return None };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_times() {
        assert_eq!(name_time("1970-01-01T00-00-00Z.coffer"), Some(0));
        assert_eq!(name_time("2026-11-24T08-00-00Z.coffer"), Some(1_795_507_200)); // date -d 2026-11-24T08:00:00Z +%s
        assert_eq!(crate::text::utc(name_time("2024-02-29T23-59-59Z.coffer").unwrap()), "2024-02-29 23:59:59");
        assert_eq!(name_time("db.coffer"), None);
        assert_eq!(name_time("2026-13-01T00-00-00Z.coffer"), None);
        assert_eq!(name_time("2026-11-24T08-00-00Z-0f1e2d3c.coffer"), Some(1_795_507_200));
        assert_eq!(name_time("2026-11-24T08-00-00Z-0f1e2d3.coffer"), None);
        assert_eq!(name_time("2026-11-24T08-00-00Z-0f1e2d3g.coffer"), None);
    }
}
