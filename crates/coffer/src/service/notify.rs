//! systemd's service notifications, as sd_notify(3) describes them.
//!
//! Notifications follow sd_notify(3), spoken directly: one datagram of `KEY=VALUE` lines to
//! the socket `$NOTIFY_SOCKET` names (a path, or an abstract socket name after `@`). The
//! watchdog is on when `$WATCHDOG_USEC` is set, and `$WATCHDOG_PID`, if set, is this process.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// How often to say WATCHDOG=1 (half the manager's timeout), if it watches this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier the environment asks for: none without `$NOTIFY_SOCKET` (not started as a
    /// notify service); an error if it names no socket this can reach.
    pub fn from_env() -> io::Result<Option<Self>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else { return Ok(None) };
        let addr = address(&path)?;
        let socket = UnixDatagram::unbound()?;
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        let watchdog = watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id());
        Ok(Some(Notifier { socket, addr, watchdog }))
    }

    /// Sends `lines` (`READY=1`, `STATUS=...`), as one message.
    pub fn send(&self, lines: &[String]) -> io::Result<()> {
        let text = lines.join("\n");
        self.socket.send_to_addr(text.as_bytes(), &self.addr).map(drop)
    }

    /// How often the watchdog wants WATCHDOG=1, if it is on for this process.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }
}

/// The socket address `$NOTIFY_SOCKET` names: an absolute path, or `@NAME` for an abstract
/// socket.
fn address(value: &OsStr) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(value),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NOTIFY_SOCKET={}: not a socket path or @name", value.to_string_lossy()),
        )),
    }
}

/// The watchdog's ping interval from `$WATCHDOG_USEC` and `$WATCHDOG_PID`: half the timeout,
/// when a timeout is set and no other process is the one watched.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, ours: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != ours {
            return None;
        }
    }
    Some(Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_for_this_process_only() {
        let half = Some(Duration::from_secs(30));
        assert_eq!(watchdog_interval(Some("60000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("60000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("60000000"), Some("8"), 7), None, "another process is watched");
        assert_eq!(watchdog_interval(Some("60000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }

    #[test]
    fn socket_addresses() {
        use std::os::linux::net::SocketAddrExt;
        assert_eq!(
            address(OsStr::new("/run/systemd/notify")).unwrap().as_pathname(),
            Some("/run/systemd/notify".as_ref())
        );
        assert_eq!(address(OsStr::new("@abc")).unwrap().as_abstract_name(), Some(&b"abc"[..]));
        assert!(address(OsStr::new("relative/path")).is_err());
        assert!(address(OsStr::new("vsock:2:1234")).is_err());
    }

    #[test]
    fn notifications_arrive_as_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            addr: address(path.as_os_str()).unwrap(),
            watchdog: None,
        };
        n.send(&["READY=1".into(), "STATUS=archiving".into()]).unwrap();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=archiving");
    }
}
