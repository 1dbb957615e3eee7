//! Moving images between hosts: TLS 1.3 with both ends authenticated by certificates from one
//! CA (rustls on aws-lc-rs; there is no mode without verification), a small CA for those
//! without a PKI, and the few bytes of protocol around an image stream.

pub mod pki;
pub mod stripe;
pub mod tls;
pub mod wire;
