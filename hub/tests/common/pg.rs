//! A real PostgreSQL server for tests: Debian's `initdb` and `pg_ctl` in a temporary directory,
//! on a free port, run as `nobody` when the tests run as root (PostgreSQL refuses root). The
//! server is stopped and its directory removed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The user the server runs as when the tests run as root.
const UNPRIVILEGED: &str = "nobody";

/// A running PostgreSQL server, stopped when dropped.
#[derive(Debug)]
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_root: bool,
    pub port: u16,
    next_db: AtomicU32,
}

/// The newest Debian PostgreSQL `bin` directory (`/usr/lib/postgresql/N/bin`), or
/// `TIDEPOOL_PG_BIN`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TIDEPOOL_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("PostgreSQL server binaries not found in /usr/lib/postgresql: `make test` installs them (apt-get install postgresql)")
    })
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let as_root = is_root();
        let dir = tempfile::Builder::new().prefix("tidepool-pg-").tempdir().expect("tempdir");
        if as_root {
            run(Command::new("chown").args([UNPRIVILEGED]).arg(dir.path()), "chown");
        }
        let data = dir.path().join("data");
        let server = PgServer { dir, bin, as_root, port: 0, next_db: AtomicU32::new(1) };
        // --no-sync: only initdb's own files skip fsync; the running server still flushes every
        // commit, which the durability tests rely on.
        server.pg("initdb", &["-D", path(&data), "-U", "tidepool", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        let mut server = server;
        // pg_ctl's -w waits for the server to accept connections; a port taken between
        // free_port() and the start makes it fail, so try a few.
        for attempt in 0..5 {
            let port = free_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=32MB",
                path(server.dir.path())
            );
            let log = server.dir.path().join("server.log");
            let ok = server.pg_status(
                "pg_ctl",
                &["-D", path(&data), "-l", path(&log), "-o", &options, "-w", "-t", "60", "start"],
            );
            if ok {
                server.port = port;
                return server;
            }
            eprintln!("postgres did not start on port {port} (attempt {attempt}): {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        panic!("postgres did not start");
    }

    /// A URL of the server's default database.
    pub fn admin_url(&self) -> String {
        format!("postgres://tidepool@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn fresh_db(&self) -> String {
        let name = format!("t{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        // createdb rather than the Rust client: the synchronous client cannot run inside the
        // async tests' runtime.
        let port = self.port.to_string();
        run(
            Command::new(self.bin.join("createdb")).args(["-h", "127.0.0.1", "-p", &port, "-U", "tidepool", &name]),
            "createdb",
        );
        format!("postgres://tidepool@127.0.0.1:{}/{name}", self.port)
    }

    fn pg_command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", UNPRIVILEGED, "--"]).arg(exe).args(args);
            c
        } else {
            let mut c = Command::new(exe);
            c.args(args);
            c
        }
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        run(&mut self.pg_command(tool, args), tool);
    }

    fn pg_status(&self, tool: &str, args: &[&str]) -> bool {
        self.pg_command(tool, args).status().map(|s| s.success()).unwrap_or(false)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data();
            // immediate: the tests are over, nothing needs a checkpoint.
            let _ = self.pg_command("pg_ctl", &["-D", path(&data), "-m", "immediate", "-w", "-t", "60", "stop"]).output();
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
