//! MySQL and MariaDB: the xbstream format that their physical backup engines stream
//! (`mariabackup`, `xtrabackup`), a source that turns such a stream into image entries as it
//! arrives, driving the engines, and the backup's metadata (LSNs, binary log position, GTIDs).

pub mod client;
pub mod engine;
pub mod events;
pub mod meta;
mod options;
pub mod source;
pub mod tables;
pub mod xbstream;
