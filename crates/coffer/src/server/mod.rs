//! The server wing: everything that runs a server on restored data. The prepare step and chain
//! restores (the engine's InnoDB recovery), point-in-time recovery (a private server replaying
//! the archived binary log), and drills (a private server checking every table). The private
//! server they share (`private`) listens on no network, runs as no root, and dies with coffer.
//!
//! Seeding a replica (`replica`) joins them, sharing the applier (`applier`) with point-in-time
//! recovery. Restoring single tables (`tables`) restores some of a backup's files, opens them on
//! the private server (replaying their binary log with the applier, for a point in time), and
//! imports their tablespaces into a running server.

pub(crate) mod applier;
pub(crate) mod beside;
pub mod drill;
pub mod pitr;
pub mod prepare;
pub(crate) mod private;
pub mod replica;
pub mod tables;
