//! How coffer reaches S3 as the AWS CLI does: the client options of the environment, the
//! certificate authorities of `AWS_CA_BUNDLE`, credentials and region from `~/.aws`, and what
//! server-side copies need of the connection.

use crate::{s3copy, StoreError, StoreOptions};
use std::sync::Arc;

/// The HTTP client options of the S3 connection `b` describes (from the environment, and
/// `with_allow_http` for an explicit endpoint), plus the certificate authorities of
/// `AWS_CA_BUNDLE` (as the AWS CLI reads it: a store behind a private CA).
pub(crate) fn s3_client_options(
    b: &object_store::aws::AmazonS3Builder,
) -> Result<object_store::ClientOptions, StoreError> {
    use object_store::aws::AmazonS3ConfigKey as K;
    use object_store::client::ClientConfigKey as C;
    let mut client = object_store::ClientOptions::new();
    for key in [
        C::AllowHttp,
        C::AllowInvalidCertificates,
        C::NoSystemCertificates,
        C::ConnectTimeout,
        C::Http1Only,
        C::Http2Only,
        C::PoolIdleTimeout,
        C::PoolMaxIdlePerHost,
        C::ProxyUrl,
        C::ProxyCaCertificate,
        C::ProxyExcludes,
        C::ReadTimeout,
        C::Timeout,
        C::UserAgent,
    ] {
        if let Some(v) = b.get_config_value(&K::Client(key)) {
            client = client.with_config(key, v);
        }
    }
    if let Some(bundle) = std::env::var_os("AWS_CA_BUNDLE").filter(|v| !v.is_empty()) {
        let bad = |detail: String| StoreError::Usage(format!("AWS_CA_BUNDLE={}: {detail}", bundle.to_string_lossy()));
        let pem = std::fs::read(&bundle).map_err(|e| bad(e.to_string()))?;
        let certs = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in it".into()));
        }
        for c in certs {
            client = client.with_root_certificate(c);
        }
    }
    Ok(client)
}

/// What server-side copies need of the S3 connection `b` describes, which built `s3`.
pub(crate) fn s3_direct(
    b: &object_store::aws::AmazonS3Builder,
    bucket: &str,
    s3: Arc<object_store::aws::AmazonS3>,
    client: object_store::ClientOptions,
    opts: &StoreOptions,
) -> object_store::Result<s3copy::S3Direct> {
    use object_store::aws::AmazonS3ConfigKey as K;
    use object_store::client::{HttpConnector, ReqwestConnector};
    let get = |k: K| b.get_config_value(&k).filter(|v| !v.is_empty());
    let bucket = bucket.to_owned();
    let region = get(K::Region).unwrap_or_else(|| "us-east-1".into());
    let virtual_hosted = get(K::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
    // As object_store itself addresses the bucket.
    let bucket_url = match (get(K::Endpoint), virtual_hosted) {
        (Some(ep), true) => ep.trim_end_matches('/').to_owned(),
        (Some(ep), false) => format!("{}/{bucket}", ep.trim_end_matches('/')),
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    };
    // A copied part is 256 MiB, copied by the store itself: within the same time as a part sent.
    let client = ReqwestConnector::default().connect(&client.with_timeout(opts.timeout))?;
    Ok(s3copy::S3Direct {
        s3,
        bucket_url,
        bucket,
        region,
        client,
        concurrency: opts.concurrency,
        retry_for: opts.retry_timeout + opts.timeout,
        retries: opts.retries,
    })
}

/// The sections of an INI file (`[name]`, `key = value`), as the AWS CLI writes them.
fn ini(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.trim().to_owned(), Vec::new()));
        } else if let (Some((k, v)), Some(section)) = (line.split_once('='), out.last_mut()) {
            section.1.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn section<'a>(ini: &'a [(String, Vec<(String, String)>)], name: &str, key: &str) -> Option<&'a str> {
    ini.iter().filter(|(n, _)| n == name).flat_map(|(_, kv)| kv).find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// What the AWS CLI's files say for the profile `AWS_PROFILE` (default "default"):
/// credentials from `~/.aws/credentials` (or `AWS_SHARED_CREDENTIALS_FILE`) and the region from
/// `~/.aws/config` (or `AWS_CONFIG_FILE`), each used only where the environment says nothing.
pub(crate) fn aws_files(mut b: object_store::aws::AmazonS3Builder) -> object_store::aws::AmazonS3Builder {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let home = env("HOME").unwrap_or_default();
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    if env("AWS_ACCESS_KEY_ID").is_none() {
        let path = env("AWS_SHARED_CREDENTIALS_FILE").unwrap_or_else(|| format!("{home}/.aws/credentials"));
        let creds = ini(&std::fs::read_to_string(path).unwrap_or_default());
        if let (Some(id), Some(secret)) =
            (section(&creds, &profile, "aws_access_key_id"), section(&creds, &profile, "aws_secret_access_key"))
        {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
            if let Some(token) = section(&creds, &profile, "aws_session_token") {
                b = b.with_token(token);
            }
        }
    }
    if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none() {
        let path = env("AWS_CONFIG_FILE").unwrap_or_else(|| format!("{home}/.aws/config"));
        let config = ini(&std::fs::read_to_string(path).unwrap_or_default());
        // The config file names profiles "profile NAME", except the default one.
        let name = if profile == "default" { profile.clone() } else { format!("profile {profile}") };
        if let Some(region) = section(&config, &name, "region") {
            b = b.with_region(region);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_files_are_read_like_the_aws_cli() {
        let text = "# comment\n[default]\naws_access_key_id = AK\naws_secret_access_key=SK\n\n[profile ops]\nregion = eu-west-3\n[ops]\naws_access_key_id = OPS\n";
        let parsed = ini(text);
        assert_eq!(section(&parsed, "default", "aws_access_key_id"), Some("AK"));
        assert_eq!(section(&parsed, "default", "aws_secret_access_key"), Some("SK"));
        assert_eq!(section(&parsed, "profile ops", "region"), Some("eu-west-3"));
        assert_eq!(section(&parsed, "ops", "aws_access_key_id"), Some("OPS"));
        assert_eq!(section(&parsed, "ops", "region"), None);
        assert!(ini("key = before any section").is_empty());
    }
}
