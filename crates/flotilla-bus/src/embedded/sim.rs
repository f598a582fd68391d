//! A simulated disk for crash tests: every file has *live* bytes (what reads see) and
//! *durable* bytes (what survives a crash). [`SimFs::crash`] returns the disk as it
//! would be found after power loss, optionally keeping a torn, partly written tail.
//! Directory entries are durable only after `sync_dir`. Writes can be made to fail
//! with ENOSPC to test a full disk.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::io::{AppendFile, Filesystem, ReadFile};

#[derive(Debug, Clone, Default)]
struct SimFile {
    live: Vec<u8>,
    durable: Vec<u8>,
    modified: Option<std::time::SystemTime>,
}

#[derive(Debug, Default)]
struct Disk {
    files: BTreeMap<PathBuf, SimFile>,
    dirs: BTreeSet<PathBuf>,
    /// Names of files whose directory entry is durable.
    durable_names: BTreeSet<PathBuf>,
    /// Bytes that may still be written before appends fail with ENOSPC.
    space_left: Option<u64>,
    locked: BTreeSet<PathBuf>,
    syncs: u64,
}

/// How a crash treats bytes that were written but not synced.
#[derive(Debug, Clone, Copy)]
pub enum Torn {
    /// Every unsynced byte is lost.
    LoseAll,
    /// The first `n` unsynced bytes of every file reached the disk.
    Keep(usize),
    /// The unsynced tail reached the disk with one byte flipped at this position
    /// (counted from the end of the durable bytes), as a torn sector would leave it.
    KeepCorrupted(usize),
}

/// The simulated disk; clones share it.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    disk: Arc<Mutex<Disk>>,
}

impl SimFs {
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// The disk after power loss.
    pub fn crash(&self, torn: Torn) -> SimFs {
        let disk = self.lock_disk();
        let mut after = Disk { dirs: disk.dirs.clone(), durable_names: disk.durable_names.clone(), ..Disk::default() };
        for (path, file) in &disk.files {
            if !disk.durable_names.contains(path) {
                continue;
            }
            let mut bytes = file.durable.clone();
            let unsynced = file.live.get(file.durable.len()..).unwrap_or(&[]);
            match torn {
                Torn::LoseAll => {}
                Torn::Keep(n) => bytes.extend_from_slice(&unsynced[..n.min(unsynced.len())]),
                Torn::KeepCorrupted(at) => {
                    let start = bytes.len();
                    bytes.extend_from_slice(unsynced);
                    if let Some(byte) = bytes.get_mut(start + at) {
                        *byte ^= 0x5a;
                    }
                }
            }
            after.files.insert(path.clone(), SimFile { live: bytes.clone(), durable: bytes, modified: file.modified });
        }
        // Removals count as durable at once (the bus syncs the directory right after
        // removing a segment, so the difference never matters to it).
        SimFs { disk: Arc::new(Mutex::new(after)) }
    }

    /// Appends fail with ENOSPC once `bytes` more have been written; `None` lifts it.
    pub fn set_space_left(&self, bytes: Option<u64>) {
        self.lock_disk().space_left = bytes;
    }

    /// Flips one byte of a file in place (live and durable), to model disk rot.
    pub fn corrupt(&self, path: &Path, offset: usize) {
        let mut disk = self.lock_disk();
        if let Some(file) = disk.files.get_mut(path) {
            if let Some(b) = file.live.get_mut(offset) {
                *b ^= 0xff;
            }
            if let Some(b) = file.durable.get_mut(offset) {
                *b ^= 0xff;
            }
        }
    }

    /// Every file's path and live length.
    pub fn files(&self) -> Vec<(PathBuf, usize)> {
        self.lock_disk().files.iter().map(|(p, f)| (p.clone(), f.live.len())).collect()
    }

    /// How many `sync_data` calls the disk has seen.
    pub fn syncs(&self) -> u64 {
        self.lock_disk().syncs
    }

    fn lock_disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

struct SimAppend {
    fs: SimFs,
    path: PathBuf,
}

impl AppendFile for SimAppend {
    fn len(&self) -> u64 {
        self.fs.lock_disk().files.get(&self.path).map_or(0, |f| f.live.len() as u64)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut disk = self.fs.lock_disk();
        let mut written = data.len();
        let mut full = false;
        if let Some(left) = disk.space_left {
            if (data.len() as u64) > left {
                written = left as usize;
                full = true;
            }
            disk.space_left = Some(left - written as u64);
        }
        let file = disk.files.get_mut(&self.path).ok_or_else(|| not_found(&self.path))?;
        // Like a real disk, a write that runs out of space leaves a partial tail.
        file.live.extend_from_slice(&data[..written]);
        file.modified = Some(std::time::SystemTime::now());
        if full {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut disk = self.fs.lock_disk();
        disk.syncs += 1;
        let file = disk.files.get_mut(&self.path).ok_or_else(|| not_found(&self.path))?;
        file.durable = file.live.clone();
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut disk = self.fs.lock_disk();
        let file = disk.files.get_mut(&self.path).ok_or_else(|| not_found(&self.path))?;
        file.live.truncate(len as usize);
        // Truncation is metadata; treat it as durable at once so a crash cannot
        // resurrect bytes the bus decided to drop (the conservative case for the bus is
        // covered by torn-tail tests).
        file.durable.truncate(len as usize);
        Ok(())
    }
}

struct SimRead {
    fs: SimFs,
    path: PathBuf,
}

impl ReadFile for SimRead {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let disk = self.fs.lock_disk();
        let file = disk.files.get(&self.path).ok_or_else(|| not_found(&self.path))?;
        let start = (offset as usize).min(file.live.len());
        let n = buf.len().min(file.live.len() - start);
        buf[..n].copy_from_slice(&file.live[start..start + n]);
        Ok(n)
    }
}

struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.lock_disk().locked.remove(&self.path);
    }
}

impl Filesystem for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.lock_disk();
        for ancestor in path.ancestors() {
            disk.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.lock_disk();
        let live: Vec<PathBuf> = disk.files.keys().filter(|p| p.parent() == Some(path)).cloned().collect();
        disk.durable_names.retain(|p| p.parent() != Some(path));
        disk.durable_names.extend(live);
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let disk = self.lock_disk();
        if !disk.dirs.contains(path) {
            return Err(not_found(path));
        }
        let files = disk.files.keys().filter(|p| p.parent() == Some(path)).cloned();
        let dirs = disk.dirs.iter().filter(|p| p.parent() == Some(path)).cloned();
        Ok(files.chain(dirs).collect())
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.lock_disk().dirs.contains(path)
    }

    fn open_append(&self, path: &Path, create: bool) -> io::Result<Box<dyn AppendFile>> {
        let mut disk = self.lock_disk();
        if !disk.files.contains_key(path) {
            if !create {
                return Err(not_found(path));
            }
            if let Some(parent) = path.parent()
                && !disk.dirs.contains(parent)
            {
                return Err(not_found(parent));
            }
            disk.files.insert(path.to_path_buf(), SimFile::default());
        }
        Ok(Box::new(SimAppend { fs: self.clone(), path: path.to_path_buf() }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        if !self.lock_disk().files.contains_key(path) {
            return Err(not_found(path));
        }
        Ok(Arc::new(SimRead { fs: self.clone(), path: path.to_path_buf() }))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let disk = self.lock_disk();
        disk.files.get(path).map(|f| f.live.len() as u64).ok_or_else(|| not_found(path))
    }

    fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime> {
        let disk = self.lock_disk();
        let file = disk.files.get(path).ok_or_else(|| not_found(path))?;
        Ok(file.modified.unwrap_or(std::time::UNIX_EPOCH))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.lock_disk().files.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.lock_disk();
        if disk.files.keys().chain(disk.dirs.iter()).any(|p| p.parent() == Some(path)) {
            return Err(io::Error::new(io::ErrorKind::DirectoryNotEmpty, format!("{} is not empty", path.display())));
        }
        if disk.dirs.remove(path) { Ok(()) } else { Err(not_found(path)) }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.lock_disk();
        let file = disk.files.remove(from).ok_or_else(|| not_found(from))?;
        disk.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let mut disk = self.lock_disk();
        if !disk.locked.insert(path.to_path_buf()) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        Ok(Box::new(SimLock { fs: self.clone(), path: path.to_path_buf() }))
    }
}
