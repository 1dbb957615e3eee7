//! User and group names, cached: a datadir has thousands of files and one owner.

use nix::unistd::{Gid, Group, Uid, User};
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct NameCache {
    users: HashMap<u32, Vec<u8>>,
    groups: HashMap<u32, Vec<u8>>,
    uids: HashMap<Vec<u8>, Option<u32>>,
    gids: HashMap<Vec<u8>, Option<u32>>,
}

impl NameCache {
    pub fn user_name(&mut self, uid: u32) -> Vec<u8> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name.into_bytes()).unwrap_or_default()
            })
            .clone()
    }

    pub fn group_name(&mut self, gid: u32) -> Vec<u8> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                Group::from_gid(Gid::from_raw(gid)).ok().flatten().map(|g| g.name.into_bytes()).unwrap_or_default()
            })
            .clone()
    }

    /// The uid of a user name on this host, if it has one.
    pub fn uid_of(&mut self, name: &[u8]) -> Option<u32> {
        if name.is_empty() {
            return None;
        }
        *self.uids.entry(name.to_vec()).or_insert_with(|| {
            let name = std::str::from_utf8(name).ok()?;
            User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
        })
    }

    pub fn gid_of(&mut self, name: &[u8]) -> Option<u32> {
        if name.is_empty() {
            return None;
        }
        *self.gids.entry(name.to_vec()).or_insert_with(|| {
            let name = std::str::from_utf8(name).ok()?;
            Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw())
        })
    }
}

/// Resolves `--owner USER[:GROUP]` to ids; a missing group means the user's primary group.
pub fn lookup_owner(spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let numeric = |s: &str| s.parse::<u32>().ok();
    let (uid, primary) = match User::from_name(user).map_err(|e| e.to_string())? {
        Some(u) => (u.uid.as_raw(), u.gid.as_raw()),
        None => match numeric(user) {
            Some(uid) => (uid, uid),
            None => return Err(format!("no such user: {user}")),
        },
    };
    let gid = match group {
        None => primary,
        Some(g) => match Group::from_name(g).map_err(|e| e.to_string())? {
            Some(gr) => gr.gid.as_raw(),
            None => numeric(g).ok_or_else(|| format!("no such group: {g}"))?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_known() {
        let mut c = NameCache::default();
        assert_eq!(c.user_name(0), b"root");
        assert_eq!(c.uid_of(b"root"), Some(0));
        assert_eq!(c.uid_of(b"no-such-user-here"), None);
        assert_eq!(lookup_owner("root").unwrap(), (0, 0));
        assert_eq!(lookup_owner("0:0").unwrap(), (0, 0));
        assert!(lookup_owner("no-such-user-here").is_err());
    }
}
