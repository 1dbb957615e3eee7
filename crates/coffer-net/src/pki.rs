//! A small CA and node certificates, for sites without a PKI: `coffer tls generate`. ECDSA
//! P-256 keys from aws-lc-rs through rcgen; keys written with mode 0600.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    #[error("{0} already exists (use another --name, or remove it)")]
    Exists(PathBuf),
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The CA's parameters, derived from its key alone, so that a CA made earlier can sign again:
/// the name carries a fingerprint of the key, so two coffer CAs never share a name (a peer from
/// another CA is then "not signed by our CA", not a bad signature).
fn ca_params(key: &KeyPair) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.public_key_raw());
    let fingerprint: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    dn.push(DnType::CommonName, format!("coffer transfer CA {fingerprint}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2045, 1, 1);
    Ok(p)
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    let io = |source| PkiError::Io { path: path.into(), source };
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PkiError::Exists(path.into())
        } else {
            io(e)
        }
    })?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(io)
}

/// What `generate` wrote.
#[derive(Debug)]
pub struct Generated {
    pub ca_created: bool,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Makes `dir/ca.crt` and `dir/ca.key` if absent, then `dir/NAME.crt` and `dir/NAME.key` for a
/// node, valid as both a sender and a receiver, for the host names and addresses in `sans`.
pub fn generate(dir: &Path, name: &str, sans: &[String], days: u32) -> Result<Generated, PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.into(), source })?;
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let ca_created = !ca_key.exists();
    let ca_keypair = if ca_created {
        let key = KeyPair::generate()?;
        let cert = ca_params(&key)?.self_signed(&key)?;
        write(&ca_key, &key.serialize_pem(), 0o600)?;
        write(&ca_crt, &cert.pem(), 0o644)?;
        key
    } else {
        let pem = std::fs::read_to_string(&ca_key).map_err(|source| PkiError::Io { path: ca_key.clone(), source })?;
        KeyPair::from_pem(&pem)?
    };
    let issuer = Issuer::new(ca_params(&ca_keypair)?, ca_keypair);
    let mut names = vec![name.to_owned()];
    names.extend(sans.iter().cloned());
    let mut p = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let ((y0, m0, d0), (y1, m1, d1)) = (civil(now.saturating_sub(86_400)), civil(now + u64::from(days) * 86_400));
    p.not_before = rcgen::date_time_ymd(y0, m0, d0);
    p.not_after = rcgen::date_time_ymd(y1, m1, d1);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    let (crt_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    write(&key_path, &key.serialize_pem(), 0o600)?;
    write(&crt_path, &cert.pem(), 0o644)?;
    Ok(Generated { ca_created, cert: crt_path, key: key_path, ca: ca_crt })
}

/// The calendar date (year, month, day) of a Unix time in seconds.
fn civil(secs: u64) -> (i32, u8, u8) {
    // Days to civil date (Howard Hinnant's algorithm), for days since 1970-01-01.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(951_782_400), (2000, 2, 29));
        assert_eq!(civil(1_795_996_800), (2026, 11, 30));
    }

    #[test]
    fn a_ca_signs_again_from_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate(dir.path(), "node1", &["127.0.0.1".into()], 30).unwrap();
        let b = generate(dir.path(), "node2", &[], 30).unwrap();
        assert!(a.ca_created && !b.ca_created);
        assert!(matches!(generate(dir.path(), "node1", &[], 30), Err(PkiError::Exists(_))));
        use std::os::unix::fs::PermissionsExt;
        for k in [&a.key, &b.key, &dir.path().join("ca.key")] {
            assert_eq!(std::fs::metadata(k).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
