//! Where runs live: HDFS through hdfs-native, or a local directory (the embedded default, which
//! Tez local mode reads as `file:///` just as well).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FsError {
    #[error("HDFS: {0}")]
    Hdfs(#[from] hdfs_native::HdfsError),
    #[error("{path}: {source}")]
    Local { path: PathBuf, source: std::io::Error },
    #[error("invalid location {0:?}: use hdfs://host:port/path or a local directory")]
    Location(String),
    #[error("HDFS namenode {namenode} is unreachable: {cause}")]
    Unreachable { namenode: String, cause: String },
}

/// A run storage location: a base directory on HDFS or on the local file system. Paths given to
/// its methods are relative to the base and use `/`.
#[derive(Debug)]
pub enum RunFs {
    Hdfs { client: hdfs_native::Client, authority: String, base: String },
    Local { base: PathBuf },
}

fn local_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> FsError + '_ {
    move |source| FsError::Local { path: path.to_owned(), source }
}

impl RunFs {
    /// Opens `hdfs://host:port/path` or a local directory (created if missing).
    pub fn open(location: &str) -> Result<RunFs, FsError> {
        if let Some(rest) = location.strip_prefix("hdfs://") {
            let (authority, path) = rest.split_once('/').ok_or_else(|| FsError::Location(location.into()))?;
            let client = hdfs_native::ClientBuilder::new().with_url(format!("hdfs://{authority}")).build()?;
            let base = format!("/{}", path.trim_end_matches('/'));
            return Ok(RunFs::Hdfs { client, authority: authority.to_owned(), base });
        }
        let path = location.strip_prefix("file://").unwrap_or(location);
        if path.is_empty() {
            return Err(FsError::Location(location.into()));
        }
        let base = PathBuf::from(path);
        std::fs::create_dir_all(&base).map_err(local_err(&base))?;
        let base = base.canonicalize().map_err(local_err(&base))?;
        Ok(RunFs::Local { base })
    }

    /// Fails within `timeout`, naming the namenode and why, unless it answers. hdfs-native
    /// retries an unreachable namenode for a long time (logging each retry), so a run checks
    /// first instead of hanging in its first real operation.
    pub async fn check(&self, timeout: Duration) -> Result<(), FsError> {
        let RunFs::Hdfs { client, authority, .. } = self else { return Ok(()) };
        let namenode = format!("hdfs://{authority}");
        match tokio::time::timeout(timeout, client.get_file_info("/")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(FsError::Unreachable { namenode, cause: e.to_string() }),
            Err(_) => {
                let cause = match tcp_probe(authority).await {
                    Some(e) => format!("{e} (gave up after {timeout:?})"),
                    None => format!("it accepts connections but did not answer within {timeout:?}"),
                };
                Err(FsError::Unreachable { namenode, cause })
            }
        }
    }

    fn hdfs_path(base: &str, rel: &str) -> String {
        if rel.is_empty() { base.to_owned() } else { format!("{}/{}", base.trim_end_matches('/'), rel) }
    }

    /// The URI of `rel` as Hadoop tools (Tez) name it.
    pub fn uri(&self, rel: &str) -> String {
        match self {
            RunFs::Hdfs { authority, base, .. } => format!("hdfs://{authority}{}", Self::hdfs_path(base, rel)),
            RunFs::Local { base } => format!("file://{}", base.join(rel).display()),
        }
    }

    /// The file system URI Tez should use as `fs.defaultFS`.
    pub fn default_fs(&self) -> String {
        match self {
            RunFs::Hdfs { authority, .. } => format!("hdfs://{authority}"),
            RunFs::Local { .. } => "file:///".to_owned(),
        }
    }

    pub async fn mkdirs(&self, rel: &str) -> Result<(), FsError> {
        match self {
            RunFs::Hdfs { client, base, .. } => Ok(client.mkdirs(&Self::hdfs_path(base, rel), 0o755, true).await?),
            RunFs::Local { base } => {
                let p = base.join(rel);
                std::fs::create_dir_all(&p).map_err(local_err(&p))
            }
        }
    }

    /// Writes a whole file (replacing it), streamed in chunks.
    pub async fn write(&self, rel: &str, chunks: impl IntoIterator<Item = Bytes>) -> Result<(), FsError> {
        match self {
            RunFs::Hdfs { client, base, .. } => {
                let options = hdfs_native::WriteOptions::default().overwrite(true).create_parent(true);
                let mut writer = client.create(&Self::hdfs_path(base, rel), options).await?;
                for chunk in chunks {
                    writer.write_bytes(chunk).await?;
                }
                writer.close().await?;
                Ok(())
            }
            RunFs::Local { base } => {
                use std::io::Write;
                let p = base.join(rel);
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir).map_err(local_err(dir))?;
                }
                let mut f = std::io::BufWriter::new(std::fs::File::create(&p).map_err(local_err(&p))?);
                for chunk in chunks {
                    f.write_all(&chunk).map_err(local_err(&p))?;
                }
                let file = f.into_inner().map_err(|e| FsError::Local { path: p.clone(), source: e.into_error() })?;
                file.sync_all().map_err(local_err(&p))
            }
        }
    }

    /// Writes a whole file from chunks arriving on a channel (written as they come).
    pub async fn write_stream(&self, rel: &str, mut chunks: tokio::sync::mpsc::Receiver<Bytes>) -> Result<(), FsError> {
        match self {
            RunFs::Hdfs { client, base, .. } => {
                let options = hdfs_native::WriteOptions::default().overwrite(true).create_parent(true);
                let mut writer = client.create(&Self::hdfs_path(base, rel), options).await?;
                while let Some(chunk) = chunks.recv().await {
                    writer.write_bytes(chunk).await?;
                }
                writer.close().await?;
                Ok(())
            }
            RunFs::Local { .. } => {
                let mut all = Vec::new();
                while let Some(chunk) = chunks.recv().await {
                    all.push(chunk);
                }
                self.write(rel, all).await
            }
        }
    }

    pub async fn read(&self, rel: &str) -> Result<Bytes, FsError> {
        match self {
            RunFs::Hdfs { client, base, .. } => {
                let mut reader = client.read(&Self::hdfs_path(base, rel)).await?;
                let len = reader.file_length();
                Ok(reader.read_bytes(len).await?)
            }
            RunFs::Local { base } => {
                let p = base.join(rel);
                std::fs::read(&p).map(Bytes::from).map_err(local_err(&p))
            }
        }
    }

    /// Opens a file to read it a line at a time ([`Lines`]), so a file of any size costs a
    /// chunk of memory.
    pub async fn lines(&self, rel: &str) -> Result<Lines, FsError> {
        let source = match self {
            RunFs::Hdfs { client, base, .. } => Source::Hdfs(Box::new(client.read(&Self::hdfs_path(base, rel)).await?)),
            RunFs::Local { base } => {
                let p = base.join(rel);
                Source::Local(std::fs::File::open(&p).map_err(local_err(&p))?, p)
            }
        };
        Ok(Lines { source, buf: Vec::new(), start: 0, line: 0, done: false })
    }

    pub async fn exists(&self, rel: &str) -> Result<bool, FsError> {
        match self {
            RunFs::Hdfs { client, base, .. } => match client.get_file_info(&Self::hdfs_path(base, rel)).await {
                Ok(_) => Ok(true),
                Err(hdfs_native::HdfsError::FileNotFound(_)) => Ok(false),
                Err(e) => Err(e.into()),
            },
            RunFs::Local { base } => Ok(base.join(rel).exists()),
        }
    }

    /// Renames within the location; fails if `to` exists (that is what makes a run directory
    /// appear atomically and only once).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        match self {
            RunFs::Hdfs { client, base, .. } => {
                Ok(client.rename(&Self::hdfs_path(base, from), &Self::hdfs_path(base, to), false).await?)
            }
            RunFs::Local { base } => {
                let (f, t) = (base.join(from), base.join(to));
                if t.exists() {
                    return Err(FsError::Local {
                        path: t,
                        source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
                    });
                }
                std::fs::rename(&f, &t).map_err(local_err(&f))
            }
        }
    }

    pub async fn delete(&self, rel: &str) -> Result<(), FsError> {
        match self {
            RunFs::Hdfs { client, base, .. } => {
                client.delete(&Self::hdfs_path(base, rel), true).await?;
                Ok(())
            }
            RunFs::Local { base } => {
                let p = base.join(rel);
                match std::fs::remove_dir_all(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(local_err(&p)(e)),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Names of the entries directly under `rel` (empty if it does not exist).
    pub async fn list(&self, rel: &str) -> Result<Vec<String>, FsError> {
        match self {
            RunFs::Hdfs { client, base, .. } => match client.list_status(&Self::hdfs_path(base, rel), false).await {
                Ok(entries) => Ok(entries
                    .into_iter()
                    .filter_map(|s| s.path.rsplit('/').next().map(str::to_owned))
                    .collect()),
                Err(hdfs_native::HdfsError::FileNotFound(_)) => Ok(vec![]),
                Err(e) => Err(e.into()),
            },
            RunFs::Local { base } => {
                let p = base.join(rel);
                let Ok(entries) = std::fs::read_dir(&p) else { return Ok(vec![]) };
                let mut names: Vec<String> =
                    entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                names.sort();
                Ok(names)
            }
        }
    }
}

/// Bytes read from a file per chunk.
const READ_CHUNK: usize = 1 << 20;

enum Source {
    Hdfs(Box<hdfs_native::file::FileReader>),
    Local(std::fs::File, PathBuf),
}

/// A file read line by line (`\n`-terminated; a last line without one counts too), holding one
/// chunk and the line that spans it.
pub struct Lines {
    source: Source,
    buf: Vec<u8>,
    start: usize,
    line: usize,
    done: bool,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines").field("line", &self.line).field("done", &self.done).finish()
    }
}

impl Lines {
    async fn fill(&mut self) -> Result<(), FsError> {
        self.buf.drain(..self.start);
        self.start = 0;
        let chunk = match &mut self.source {
            Source::Hdfs(reader) => reader.read_bytes(READ_CHUNK).await?,
            Source::Local(file, path) => {
                use std::io::Read;
                let mut chunk = vec![0; READ_CHUNK];
                let n = file.read(&mut chunk).map_err(local_err(path))?;
                chunk.truncate(n);
                Bytes::from(chunk)
            }
        };
        self.done = chunk.is_empty();
        self.buf.extend_from_slice(&chunk);
        Ok(())
    }

    /// The next line (without its `\n`) and its 1-based number, or `None` at the end.
    pub async fn next_line(&mut self) -> Result<Option<(usize, &[u8])>, FsError> {
        loop {
            let newline = self.buf[self.start..].iter().position(|b| *b == b'\n');
            let end = match newline {
                Some(i) => Some((self.start + i, self.start + i + 1)),
                None if self.done && self.start < self.buf.len() => Some((self.buf.len(), self.buf.len())),
                None if self.done => return Ok(None),
                None => None,
            };
            if let Some((end, next)) = end {
                let start = std::mem::replace(&mut self.start, next);
                self.line += 1;
                return Ok(Some((self.line, &self.buf[start..end])));
            }
            self.fill().await?;
        }
    }
}

/// Why a TCP connection to `authority` fails, if it does (a name service that is not a host
/// name fails to resolve, which says as much).
async fn tcp_probe(authority: &str) -> Option<String> {
    match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(authority)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some("connection refused".into()),
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer to a TCP connection".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_runs_write_rename_and_list() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = RunFs::open(tmp.path().to_str().unwrap()).unwrap();
        assert_eq!(fs.default_fs(), "file:///");
        fs.write("job/.tmp-r1/input/part-00000.jsonl", [Bytes::from_static(b"{}\n")]).await.unwrap();
        fs.rename("job/.tmp-r1", "job/r1").await.unwrap();
        assert!(fs.exists("job/r1/input/part-00000.jsonl").await.unwrap());
        assert_eq!(fs.read("job/r1/input/part-00000.jsonl").await.unwrap(), Bytes::from_static(b"{}\n"));
        assert_eq!(fs.list("job").await.unwrap(), vec!["r1".to_owned()]);
        assert!(fs.uri("job/r1").starts_with("file:///"));
        // A run directory appears once: renaming onto it fails.
        fs.mkdirs("job/.tmp-r1").await.unwrap();
        assert!(fs.rename("job/.tmp-r1", "job/r1").await.is_err());
        fs.delete("job/r1").await.unwrap();
        assert!(!fs.exists("job/r1").await.unwrap());
        assert!(RunFs::open("hdfs://no-path").is_err());
    }

    #[tokio::test]
    async fn lines_span_chunks_and_count_a_last_line_without_newline() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = RunFs::open(tmp.path().to_str().unwrap()).unwrap();
        let long = "x".repeat(READ_CHUNK + 10);
        fs.write("f", [Bytes::from(format!("a\n\n{long}\nlast"))]).await.unwrap();
        let mut lines = fs.lines("f").await.unwrap();
        let mut seen = Vec::new();
        while let Some((n, line)) = lines.next_line().await.unwrap() {
            seen.push((n, line.len()));
        }
        assert_eq!(seen, vec![(1, 1), (2, 0), (3, long.len()), (4, 4)]);
        assert!(fs.lines("missing").await.is_err());
    }
}
