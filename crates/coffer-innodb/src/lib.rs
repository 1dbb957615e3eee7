//! InnoDB page validation for MySQL and MariaDB tablespaces.
//!
//! Every page checksum format of both servers (shared/notes/innodb-page-checksums.md): crc32
//! (and its legacy big-endian form), the legacy innodb fold, none, ROW_FORMAT=COMPRESSED pages,
//! MariaDB full_crc32, page_compressed pages of both MariaDB formats (the older one by
//! decompressing the page), MariaDB encryption (checked over the ciphertext, no key needed),
//! and MySQL transparent compression. Pages that cannot be checked (MySQL TDE without the
//! keyring) are reported as such, never as fine or corrupt.
//!
//! [`scan::validate_files`] checks files from disk in parallel (across files and within each);
//! [`scan::PageStream`] checks a file whose bytes arrive in order.
#![forbid(unsafe_code)]

pub mod checksum;
pub mod decompress;
pub mod delta;
pub mod page;
pub mod report;
pub mod scan;
pub mod space;

pub use page::{check_page, Algo, Policy, Problem, Scratch, Verdict};
pub use report::{FileReport, Status, Tally};
pub use scan::{classify, validate_files, ChunkChecker, ChunkResult, Kind, Options, PageStream, Target};
pub use space::{Format, Space, SpaceError};
