//! Incremental backups of mariabackup and xtrabackup: per tablespace, `NAME.delta` (the pages
//! changed since the base backup) and `NAME.meta` (their size and space id).
//!
//! `NAME.meta` is text, `key = value` a line: `page_size`, `zip_size` (0, or the compressed page
//! size), `space_id`, and from Percona XtraBackup 8.0 `space_flags`. MariaDB writes the physical
//! size twice for ROW_FORMAT=COMPRESSED tables (`page_size = 4096`, `zip_size = 4096`); older
//! writers the logical size in `page_size`. Either way the pages of the delta are `zip_size`
//! bytes if it is not 0, else `page_size` bytes.
//!
//! `NAME.delta` is a sequence of blocks (the engines' `write_filt.cc`, and the apply loop of
//! `xtrabackup.cc`): a header page starting with `xtra` (`XTRA` for the last block), then
//! big-endian u32 page numbers, ended by `0xFFFFFFFF` unless all `page/4 - 1` slots are used,
//! then that many pages. Every block but the last is full (the engines flush only full blocks,
//! and their apply asserts it); the last may list no page at all (nothing changed).
//!
//! [`DeltaParser`] takes a delta's bytes as they arrive and yields its pages; [`DeltaStream`]
//! validates them into a [`FileReport`](crate::report::FileReport); [`DeltaChecker`] validates
//! a delta read from a file in chunks, in any order (a backup reading the file). A delta need
//! not hold page 0: the pages are judged against the space the `.meta` describes, refined by
//! page 0 when it is there, and the checksum format (full_crc32 or not, which MariaDB's `.meta`
//! does not say) is taken from the first page that validates under one of them. Without its
//! `.meta` (an image where the delta comes first), [`infer`] finds the page size from the delta
//! itself: the one under which its first page is a valid page with the number the header lists.
//!
//! Layout: `meta` (the `.meta`), `parser` (blocks and pages), `judge` (pages against their
//! space, and [`infer`]), `stream` ([`DeltaStream`]), `checker` ([`DeltaChecker`]).

mod checker;
mod judge;
mod meta;
mod parser;
mod stream;

pub use checker::DeltaChecker;
pub use judge::{infer, DeltaJudge, Inference};
pub use meta::{delta_of, meta_of, read_meta_beside, DeltaMeta, MetaError};
pub use parser::{parse_header, BlockHeader, DeltaError, DeltaPage, DeltaParser, DeltaSummary};
pub use stream::{cross_check, DeltaStream, MetaSource};

/// The first bytes of every block but the last.
pub const MAGIC: [u8; 4] = *b"xtra";
/// The first bytes of the last block.
pub const MAGIC_LAST: [u8; 4] = *b"XTRA";
/// Ends the page list of a block that is not full.
pub const TERMINATOR: u32 = 0xFFFF_FFFF;
/// A `.meta` is a few dozen bytes; anything longer is not one.
pub const META_MAX: usize = 4096;
/// What [`infer`] needs at most: a 64K header and the first 64K page.
pub const INFER_MAX: usize = 2 * 65536;
