//! Seeding a replica: the primary's probe (`primary`).

pub(crate) mod primary;

pub use primary::{catalog_primary, PrimarySpec, PrimaryTls};
