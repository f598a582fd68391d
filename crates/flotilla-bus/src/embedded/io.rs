//! File I/O behind a trait, so tests can run the bus on a simulated disk that knows
//! which bytes were written and which were synced, and can "crash" at any point.
//!
//! [`RealFs`] is the operating system. [`SimFs`](crate::embedded::sim::SimFs) is the
//! simulation. The contract every implementation keeps:
//!
//! - `AppendFile::append` writes at the end of the file. The bytes are readable at once
//!   but survive a crash only after `sync_data` returns.
//! - A new file's name survives a crash only after `sync_dir` of its directory; so does
//!   a removal or rename.
//! - `read_at` may return fewer bytes than asked for only at the end of the file.
//!
//! [`RealFs`] creates directories 0700 and files 0600 (less whatever the umask takes
//! away): queues hold other people's messages, so only the node's user reads them.

use std::any::Any;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file opened for appending.
pub trait AppendFile: Send {
    /// Current length in bytes, written or not yet synced.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes all of `data` at the end.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (used to drop a failed or torn tail).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// A file opened for reading at offsets; shared between readers.
pub trait ReadFile: Send + Sync {
    /// Reads into `buf` at `offset`; fewer bytes only at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// The file system operations the embedded bus needs.
pub trait Filesystem: Send + Sync + 'static {
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, removals, renames) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Entries of a directory (full paths), in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    fn is_dir(&self, path: &Path) -> bool;
    /// Opens `path` for appending, creating it when `create` is set.
    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn AppendFile>>;
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>>;
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Last modification time, for age-based retention.
    fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Takes an exclusive lock that lasts as long as the returned guard; fails at once
    /// with `WouldBlock` when another process holds it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
}

/// The mode of the directories [`RealFs`] creates: the owner's only.
pub const PRIVATE_DIR: u32 = 0o700;
/// The mode of the files [`RealFs`] creates: the owner's only.
pub const PRIVATE_FILE: u32 = 0o600;

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealAppend {
    file: File,
    len: u64,
}

impl AppendFile for RealAppend {
    fn len(&self) -> u64 {
        self.len
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        // Positional writes keep `len` the single source of truth even after a
        // partial write failed (e.g. ENOSPC) and was truncated away.
        self.file.write_all_at(data, self.len)?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }
}

struct RealRead(File);

impl ReadFile for RealRead {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.0.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

/// Holds the locked file open: closing it releases the lock.
struct FileLock(#[allow(dead_code)] File);

impl Filesystem for RealFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        fs::read_dir(path)?.map(|entry| entry.map(|e| e.path())).collect()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new().write(true).create(create).truncate(false).mode(PRIVATE_FILE).open(path)?;
        let len = file.metadata()?.len();
        Ok(Box::new(RealAppend { file, len }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        Ok(Arc::new(RealRead(File::open(path)?)))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime> {
        fs::metadata(path)?.modified()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(PRIVATE_FILE).open(path)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // Record who holds the lock, for the error message another process will print.
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(Box::new(FileLock(file)))
    }
}
