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

/// The start of the name of an empty file that names an owner ([`Owner::marker`]).
const MARKER: &str = "_owner-";

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner { pid, host: host_name(), process: comm(pid).unwrap_or_default() }
    }

    /// The name of an empty file that records this owner. An empty file is created and closed
    /// at once, where a file with content waits for the namenode to complete its block (half a
    /// second, typically): a snapshot marks its directory with one instead of a state file.
    pub fn marker(&self) -> String {
        format!("{MARKER}{}-{}-{}", self.pid, hex::encode(&self.host), hex::encode(&self.process))
    }

    /// The owner a [`Owner::marker`] name records; `None` for any other name.
    pub fn from_marker(name: &str) -> Option<Owner> {
        let mut parts = name.strip_prefix(MARKER)?.splitn(3, '-');
        let pid = parts.next()?.parse().ok()?;
        let text = |part: Option<&str>| String::from_utf8(hex::decode(part?).ok()?).ok();
        let host = text(parts.next())?;
        let process = text(parts.next())?;
        Some(Owner { pid, host, process })
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

    #[test]
    fn a_marker_names_its_owner() {
        let odd = Owner { pid: 4_294_967_295, host: "a-b.example".into(), process: "x y-z/1".into() };
        for owner in [Owner::current(), odd] {
            let name = owner.marker();
            assert!(name.len() < 255, "an HDFS name component: {name}");
            assert_eq!(Owner::from_marker(&name), Some(owner));
        }
        for other in ["_state.json", "input", "_owner-", "_owner-12", "_owner-x-00-00", "_owner-1-zz-00"] {
            assert_eq!(Owner::from_marker(other), None, "{other}");
        }
    }
}
