//! Which process owns a run in progress, and whether it is still alive: `status` tells a run
//! that is still running from one whose bridge was killed, and a run's scratch directory is
//! removed once its owner is gone.

use serde::{Deserialize, Serialize};

/// The process (on a host) that runs a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub host: String,
    /// The process's name (`/proc/<pid>/comm`), so a reused pid is not taken for the owner.
    pub process: String,
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim_end().to_owned())
}

/// This machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner { pid, host: host_name(), process: comm(pid).unwrap_or_default() }
    }

    /// Whether the owner has certainly ended: it ran on this host and no process with its pid
    /// and name exists. An owner on another host is never known to be gone.
    pub fn is_gone(&self) -> bool {
        self.host == host_name() && comm(self.pid).is_none_or(|name| name != self.process)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_child_is_gone() {
        let me = Owner::current();
        assert!(!me.is_gone());
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(Owner { pid, ..me.clone() }.is_gone());
        assert!(Owner { process: "not-this-one".into(), ..me.clone() }.is_gone());
        assert!(!Owner { pid, host: "elsewhere".into(), ..me }.is_gone());
    }
}
