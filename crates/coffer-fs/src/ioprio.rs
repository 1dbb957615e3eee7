//! The I/O scheduling class of this process (`--io-priority`), with Linux's `ioprio_set`.
//!
//! Linux keeps the priority per thread; a thread or process inherits it from the thread that
//! creates it. [`set_process`] sets it on every thread there is, so the threads a job starts
//! afterwards, and a backup engine it runs, have it too. Only schedulers that look at it
//! honour it: BFQ by class and level; mq-deadline (Linux 5.14 on) by class only, dispatching
//! a lower class's requests after the higher ones' (or once they waited `prio_aging_expire`);
//! `none` and kyber ignore it. Buffered writes reach the disk from the kernel's writeback
//! threads, with their priority, not the writer's.

use std::io;

/// `IOPRIO_WHO_PROCESS`: `who` is a thread id (0: the calling thread).
const WHO_PROCESS: libc::c_int = 1;
/// `IOPRIO_CLASS_BE` and `IOPRIO_CLASS_IDLE`.
const CLASS_BE: libc::c_int = 2;
const CLASS_IDLE: libc::c_int = 3;
/// `IOPRIO_CLASS_SHIFT`.
const CLASS_SHIFT: libc::c_int = 13;

/// An I/O scheduling class (and level) an unprivileged process may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPriority {
    /// Disk time only when no other process wants it.
    Idle,
    /// The normal class, at a level from 0 (first) to 7 (last); a process's default level is
    /// 4 at nice 0.
    BestEffort(u8),
}

impl std::str::FromStr for IoPriority {
    type Err = String;

    /// `idle`, `best-effort` (level 7, the lowest) or `best-effort:LEVEL` (0-7).
    fn from_str(s: &str) -> Result<Self, String> {
        let (class, level) = match s.split_once(':') {
            Some((c, l)) => (c, Some(l)),
            None => (s, None),
        };
        match (class, level) {
            ("idle", None) => Ok(IoPriority::Idle),
            ("best-effort", None) => Ok(IoPriority::BestEffort(7)),
            ("best-effort", Some(l)) => match l.parse::<u8>() {
                Ok(n) if n <= 7 => Ok(IoPriority::BestEffort(n)),
                _ => Err(format!("{l}: a best-effort level is 0 (first) to 7 (last)")),
            },
            _ => Err("expected idle, best-effort or best-effort:LEVEL (0-7)".into()),
        }
    }
}

impl IoPriority {
    /// The value `ioprio_set` takes.
    fn raw(self) -> libc::c_int {
        match self {
            IoPriority::Idle => CLASS_IDLE << CLASS_SHIFT,
            IoPriority::BestEffort(level) => (CLASS_BE << CLASS_SHIFT) | libc::c_int::from(level.min(7)),
        }
    }

    /// The class and level of a value `ioprio_get` returned, if it is one of ours.
    pub fn from_raw(raw: libc::c_int) -> Option<Self> {
        match raw >> CLASS_SHIFT {
            CLASS_IDLE => Some(IoPriority::Idle),
            CLASS_BE => Some(IoPriority::BestEffort((raw & 7) as u8)),
            _ => None,
        }
    }
}

/// Sets the priority of thread `tid` (0: the calling thread).
fn set_thread(tid: libc::pid_t, p: IoPriority) -> io::Result<()> {
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, WHO_PROCESS, tid, p.raw()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The priority of thread `tid` (0: the calling thread), as `ioprio_get` returns it.
pub fn get_thread(tid: libc::pid_t) -> io::Result<libc::c_int> {
    // SAFETY: ioprio_get takes two integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_get, WHO_PROCESS, tid) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as libc::c_int)
    }
}

/// Sets the priority of the calling thread, then of every other thread of this process (a
/// thread that ended meanwhile is passed over). Threads and processes started afterwards
/// inherit it.
pub fn set_process(p: IoPriority) -> io::Result<()> {
    set_thread(0, p)?;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Ok(()) };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<libc::pid_t>().ok()) else { continue };
        match set_thread(tid, p) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            r => r?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_classes_and_levels() {
        assert_eq!("idle".parse(), Ok(IoPriority::Idle));
        assert_eq!("best-effort".parse(), Ok(IoPriority::BestEffort(7)));
        assert_eq!("best-effort:0".parse(), Ok(IoPriority::BestEffort(0)));
        assert!("best-effort:8".parse::<IoPriority>().is_err());
        assert!("realtime".parse::<IoPriority>().is_err());
        assert!("idle:3".parse::<IoPriority>().is_err());
    }

    #[test]
    fn a_thread_takes_the_class_and_its_children_inherit_it() {
        // On a thread of its own: the test harness's other threads keep theirs.
        std::thread::spawn(|| {
            for p in [IoPriority::BestEffort(6), IoPriority::Idle] {
                set_thread(0, p).unwrap();
                assert_eq!(IoPriority::from_raw(get_thread(0).unwrap()), Some(p));
                let child = std::thread::spawn(|| get_thread(0).unwrap()).join().unwrap();
                assert_eq!(IoPriority::from_raw(child), Some(p), "inherited");
            }
        })
        .join()
        .unwrap();
    }
}
