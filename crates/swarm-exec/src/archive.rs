//! The local half of `cp`: a file or directory packed into the tar archive the engine
//! takes, and the engine's archive unpacked here — never outside its destination, and
//! safe when the destination is shared with other local users (`cp` is often run as root).
//!
//! Unpacking works through directory handles, never by path: each directory of an entry's
//! path is opened relative to the one above it with `O_NOFOLLOW`, files are created with
//! `O_EXCL|O_NOFOLLOW`, and modes, owners and times are set on the open descriptors — also
//! for the directories, whose modes come last (so that a read-only one can be filled), on
//! descriptors opened afresh the same way. A directory swapped for a symbolic link while
//! the copy runs is refused, never followed. It refuses (and stops at) an entry whose path
//! is absolute or has a `..`, a hard link to such a path, and any entry that would be
//! written through a symbolic link (one the archive made or one already there); symbolic
//! links themselves are made as they are in the archive, as `docker cp` and `tar` make them.
//! Devices and FIFOs are not made. Runs of zeros become holes. Without `--archive` files
//! are the local user's and lose setuid/setgid (as a non-root `tar` leaves them); with it,
//! owners and every mode bit are as in the archive. Names are shown with their control
//! characters escaped.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;

use swarm_exec_core::escape;

/// Why unpacking stopped.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("the archive entry {0} points outside the destination: refused")]
    Outside(String),
    #[error(
        "the archive entry {entry} would be written through the symbolic link {link}: refused"
    )]
    ThroughLink { entry: String, link: String },
    #[error("no directory {0} to copy into")]
    NoParent(String),
    #[error("cannot copy a directory onto the file {0}")]
    DirOntoFile(String),
    #[error("cannot copy a file onto the directory {0}")]
    FileOntoDir(String),
    #[error("the destination {0} is a symbolic link: refused (name the directory it points to)")]
    LinkDestination(String),
    #[error(
        "the destination directory {dir} belongs to uid {uid}, not to you: whoever owns it \
         could redirect what is written there. --force to copy into it anyway"
    )]
    ForeignOwner { dir: String, uid: u32 },
    #[error("reading the archive: {0}")]
    Read(#[source] io::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Reads what a channel brings, as one stream (ends when the sender is dropped).
pub struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Writes into a channel, 64 KiB at a time (for an archive made on a thread).
pub struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub fn new(tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> Self {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(64 * 1024),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(64 * 1024));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// Packs `source` (a file, directory or link, not followed) as `name` into `out`.
pub fn pack(source: &Path, name: &str, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    if fs::symlink_metadata(source)?.is_dir() {
        b.append_dir_all(name, source)?;
    } else {
        b.append_path_with_name(source, name)?;
    }
    b.into_inner()?.flush()
}

/// How `cp` writes what it unpacks.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    /// `-a/--archive`: owners (uid/gid) and every mode bit as in the archive.
    pub archive: bool,
    /// `--force`: unpack into a destination directory another user owns.
    pub force: bool,
}

/// What an unpack did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub entries: u64,
    /// Devices and FIFOs, not made (names escaped).
    pub skipped: Vec<String>,
}

/// Where an archive of a path unpacks locally, as `docker cp` decides it: into `dest` when
/// it is a directory; otherwise as `dest` itself (the archive's top entry renamed), in its
/// parent, which must exist. The directory is held open from here on.
pub struct Destination {
    base: PathBuf,
    base_fd: OwnedFd,
    rename: Option<OsString>,
    opts: UnpackOptions,
    /// Tests: called after each entry, to change the tree under the unpack.
    #[cfg(test)]
    after_entry: std::sync::Mutex<Option<AfterEntry>>,
}

#[cfg(test)]
type AfterEntry = Box<dyn FnMut(&Path) + Send>;

/// An entry's path, split: the directories above it and its own name.
struct Placed {
    dirs: Vec<OsString>,
    leaf: OsString,
    shown: String,
}

impl Destination {
    pub fn of(dest: &Path, opts: UnpackOptions) -> Result<Destination, UnpackError> {
        let shown = || escape::path(dest);
        let lstat = fs::symlink_metadata(dest);
        if lstat.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(UnpackError::LinkDestination(shown()));
        }
        let (base, rename) = if lstat.is_ok_and(|m| m.is_dir()) {
            (dest.to_owned(), None)
        } else {
            let parent = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            };
            let name = dest
                .file_name()
                .map(OsStr::to_owned)
                .ok_or_else(|| UnpackError::NoParent(shown()))?;
            (parent, Some(name))
        };
        // The directory named by the user is taken as it is (its own path may go through
        // links of theirs); what is in it is not.
        let base_fd = open_dir_path(&base, rename.is_none()).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
                UnpackError::NoParent(escape::path(&base))
            }
            _ => UnpackError::Write {
                path: escape::path(&base),
                source: e,
            },
        })?;
        let owner = fstat(base_fd.as_fd_ref())
            .map_err(|source| UnpackError::Write {
                path: escape::path(&base),
                source,
            })?
            .st_uid;
        // SAFETY: geteuid has no failure and no memory effects.
        let me = unsafe { libc::geteuid() };
        if owner != me && owner != 0 && !opts.force {
            return Err(UnpackError::ForeignOwner {
                dir: escape::path(&base),
                uid: owner,
            });
        }
        Ok(Destination {
            base,
            base_fd,
            rename,
            opts,
            #[cfg(test)]
            after_entry: std::sync::Mutex::new(None),
        })
    }

    /// An entry's path checked and (for a renamed top entry) renamed.
    fn place(&self, entry: &Path) -> Result<Placed, UnpackError> {
        let shown = escape::path(entry);
        let mut parts = Vec::new();
        for c in entry.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_owned()),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(UnpackError::Outside(shown))
                }
            }
        }
        if let Some(name) = &self.rename {
            match parts.first_mut() {
                Some(top) => *top = name.clone(),
                None => return Err(UnpackError::Outside(shown)),
            }
        }
        let Some(leaf) = parts.pop() else {
            return Err(UnpackError::Outside(shown));
        };
        Ok(Placed {
            dirs: parts,
            leaf,
            shown,
        })
    }

    /// The directory `dirs` under the base, opened one level at a time without following
    /// links; missing ones are made (mode 0700 until the archive's mode is set) if `make`.
    fn open_dirs(
        &self,
        dirs: &[OsString],
        make: bool,
        shown: &str,
    ) -> Result<OwnedFd, UnpackError> {
        let mut at = dup(self.base_fd.as_fd_ref()).map_err(|e| self.write_err(&[], e))?;
        for (i, name) in dirs.iter().enumerate() {
            let c = cstr(name, shown)?;
            let mut opened = open_dir_at(at.as_fd_ref(), &c);
            if make && matches!(&opened, Err(e) if e.kind() == io::ErrorKind::NotFound) {
                mkdir_at(at.as_fd_ref(), &c).map_err(|e| self.write_err(&dirs[..=i], e))?;
                opened = open_dir_at(at.as_fd_ref(), &c);
            }
            at = opened.map_err(|e| self.refused(&dirs[..=i], shown, e))?;
        }
        Ok(at)
    }

    /// A failed open of a directory on the way: a link or a file there is a refusal.
    fn refused(&self, rel: &[OsString], shown: &str, e: io::Error) -> UnpackError {
        if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
            UnpackError::ThroughLink {
                entry: shown.to_owned(),
                link: escape::path(&self.local(rel)),
            }
        } else {
            self.write_err(rel, e)
        }
    }

    fn local(&self, rel: &[OsString]) -> PathBuf {
        rel.iter().fold(self.base.clone(), |p, c| p.join(c))
    }

    fn write_err(&self, rel: &[OsString], source: io::Error) -> UnpackError {
        UnpackError::Write {
            path: escape::path(&self.local(rel)),
            source,
        }
    }

    /// Unpacks the archive `input` brings. Directories get their modes, owners and times
    /// last, so that a read-only one can still be filled.
    pub fn unpack(self, input: impl Read) -> Result<Unpacked, UnpackError> {
        let mut archive = tar::Archive::new(input);
        let mut dirs = Vec::new();
        let mut done = Unpacked::default();
        for entry in archive.entries().map_err(UnpackError::Read)? {
            let mut entry = entry.map_err(UnpackError::Read)?;
            let name = entry.path().map_err(UnpackError::Read)?.into_owned();
            let placed = self.place(&name)?;
            let parent = self.open_dirs(&placed.dirs, true, &placed.shown)?;
            let leaf = cstr(&placed.leaf, &placed.shown)?;
            let rel = || [placed.dirs.clone(), vec![placed.leaf.clone()]].concat();
            let meta = Meta::of(entry.header());
            let kind = entry.header().entry_type();
            use tar::EntryType as K;
            match kind {
                K::Directory => {
                    self.make_dir(parent.as_fd_ref(), &leaf, &rel())?;
                    dirs.push((rel(), meta, placed.shown.clone()));
                }
                K::Regular | K::Continuous | K::GNUSparse => {
                    let file = self.create_file(parent.as_fd_ref(), &leaf, &rel())?;
                    write_sparse(&mut entry, &file).map_err(|e| self.write_err(&rel(), e))?;
                    self.finish(file.as_fd_ref(), &meta, false)
                        .map_err(|e| self.write_err(&rel(), e))?;
                }
                K::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(UnpackError::Read)?
                        .ok_or_else(|| UnpackError::Outside(placed.shown.clone()))?;
                    let target = cstr(target.as_os_str(), &placed.shown)?;
                    self.replace(parent.as_fd_ref(), &leaf, &rel())?;
                    symlink_at(&target, parent.as_fd_ref(), &leaf)
                        .map_err(|e| self.write_err(&rel(), e))?;
                }
                K::Link => self.hard_link(&entry, parent.as_fd_ref(), &leaf, &placed, &rel())?,
                _ => {
                    done.skipped.push(placed.shown.clone());
                    continue;
                }
            }
            done.entries += 1;
            #[cfg(test)]
            if let Some(hook) = self.after_entry.lock().unwrap().as_mut() {
                hook(&self.base.join(&name));
            }
        }
        for (rel, meta, shown) in dirs.into_iter().rev() {
            let dir = self.open_dirs(&rel, false, &shown)?;
            self.finish(dir.as_fd_ref(), &meta, true)
                .map_err(|e| self.write_err(&rel, e))?;
        }
        Ok(done)
    }

    fn make_dir(
        &self,
        parent: BorrowedFd<'_>,
        leaf: &CString,
        rel: &[OsString],
    ) -> Result<(), UnpackError> {
        match mkdir_at(parent, leaf) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Merged into when it is a directory (not a link to one).
                match open_dir_at(parent, leaf) {
                    Ok(_) => Ok(()),
                    Err(_) => Err(UnpackError::DirOntoFile(escape::path(&self.local(rel)))),
                }
            }
            Err(e) => Err(self.write_err(rel, e)),
        }
    }

    /// Makes room for a new file, link or symbolic link: what is there goes, but not a
    /// directory.
    fn replace(
        &self,
        parent: BorrowedFd<'_>,
        leaf: &CString,
        rel: &[OsString],
    ) -> Result<(), UnpackError> {
        match stat_at(parent, leaf) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                Err(UnpackError::FileOntoDir(escape::path(&self.local(rel))))
            }
            Ok(_) => unlink_at(parent, leaf).map_err(|e| self.write_err(rel, e)),
            Err(_) => Ok(()),
        }
    }

    fn create_file(
        &self,
        parent: BorrowedFd<'_>,
        leaf: &CString,
        rel: &[OsString],
    ) -> Result<File, UnpackError> {
        self.replace(parent, leaf, rel)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        let fd = unsafe { libc::openat(parent.as_raw_fd(), leaf.as_ptr(), flags, 0o600) };
        if fd < 0 {
            return Err(self.write_err(rel, io::Error::last_os_error()));
        }
        // SAFETY: a descriptor just opened, owned by nothing else.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn hard_link<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        parent: BorrowedFd<'_>,
        leaf: &CString,
        placed: &Placed,
        rel: &[OsString],
    ) -> Result<(), UnpackError> {
        let link = entry
            .link_name()
            .map_err(UnpackError::Read)?
            .ok_or_else(|| UnpackError::Outside(placed.shown.clone()))?
            .into_owned();
        let source = self.place(&link)?;
        let from = self.open_dirs(&source.dirs, false, &placed.shown)?;
        let from_leaf = cstr(&source.leaf, &placed.shown)?;
        self.replace(parent, leaf, rel)?;
        // SAFETY: valid directory descriptors and NUL-terminated names; flags 0: a link
        // found there is linked itself, not followed.
        let r = unsafe {
            libc::linkat(
                from.as_raw_fd(),
                from_leaf.as_ptr(),
                parent.as_raw_fd(),
                leaf.as_ptr(),
                0,
            )
        };
        if r != 0 {
            return Err(self.write_err(rel, io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Mode, owner (with `--archive`) and modification time, on the open descriptor.
    /// Owner first: a change of owner clears setuid/setgid.
    fn finish(&self, fd: BorrowedFd<'_>, meta: &Meta, dir: bool) -> io::Result<()> {
        let keep = match (self.opts.archive, dir) {
            (true, _) => 0o7777,
            // A directory's sticky bit guards its entries; setuid/setgid on a file run as
            // whoever owns it: not kept for files that are now the local user's.
            (false, true) => 0o1777,
            (false, false) => 0o0777,
        };
        if self.opts.archive {
            // SAFETY: a valid descriptor; IDs are plain integers.
            if unsafe { libc::fchown(fd.as_raw_fd(), meta.uid, meta.gid) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: as above.
        if unsafe { libc::fchmod(fd.as_raw_fd(), meta.mode & keep) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: meta.mtime as libc::time_t,
                tv_nsec: 0,
            },
        ];
        // SAFETY: a valid descriptor and two timespecs.
        unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) };
        Ok(())
    }
}

/// What an entry's header says of its mode, owner and time.
struct Meta {
    mode: libc::mode_t,
    uid: libc::uid_t,
    gid: libc::gid_t,
    mtime: u64,
}

impl Meta {
    fn of(h: &tar::Header) -> Meta {
        Meta {
            mode: h.mode().unwrap_or(0o644) as libc::mode_t,
            uid: h.uid().unwrap_or(0) as libc::uid_t,
            gid: h.gid().unwrap_or(0) as libc::gid_t,
            mtime: h.mtime().unwrap_or(0),
        }
    }
}

/// Writes what `from` holds to `file`, leaving runs of zeros (whole 4 KiB blocks) as
/// holes; the length is set at the end, so trailing zeros are a hole too.
fn write_sparse(from: &mut impl Read, file: &File) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    const BLOCK: usize = 4096;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        // Whole buffers, so that blocks fall on the file's block boundaries.
        let mut filled = 0;
        while filled < buf.len() {
            match from.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        for block in buf[..filled].chunks(BLOCK) {
            if block.iter().any(|&b| b != 0) {
                file.write_all_at(block, at)?;
            }
            at += block.len() as u64;
        }
    }
    file.set_len(at)
}

fn cstr(name: &OsStr, shown: &str) -> Result<CString, UnpackError> {
    CString::new(name.as_bytes()).map_err(|_| UnpackError::Outside(shown.to_owned()))
}

/// Borrowing a descriptor, for the helpers below.
trait AsFdRef {
    fn as_fd_ref(&self) -> BorrowedFd<'_>;
}

impl<T: std::os::fd::AsFd> AsFdRef for T {
    fn as_fd_ref(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: a descriptor just returned by the kernel, owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn ok(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn open_dir_path(path: &Path, no_follow: bool) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let nofollow = if no_follow { libc::O_NOFOLLOW } else { 0 };
    // SAFETY: a NUL-terminated path.
    owned(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | nofollow,
        )
    })
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &CString) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid directory descriptor and a NUL-terminated name.
    owned(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) })
}

fn mkdir_at(dir: BorrowedFd<'_>, name: &CString) -> io::Result<()> {
    // SAFETY: as above.
    ok(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) })
}

fn unlink_at(dir: BorrowedFd<'_>, name: &CString) -> io::Result<()> {
    // SAFETY: as above.
    ok(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })
}

fn symlink_at(target: &CString, dir: BorrowedFd<'_>, name: &CString) -> io::Result<()> {
    // SAFETY: NUL-terminated strings and a valid directory descriptor.
    ok(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
}

fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: zeroed is a valid stat; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    ok(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// The entry `name` in `dir` itself (a link is not followed).
fn stat_at(dir: BorrowedFd<'_>, name: &CString) -> io::Result<libc::stat> {
    // SAFETY: as for fstat, with a valid directory descriptor and name.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    ok(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sx-archive-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// An archive with entries as given, whatever their names: (path, kind, link, data).
    fn crafted(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, kind, link, data) in entries {
            let mut h = tar::Header::new_old();
            // Written raw: the builder itself refuses `..`.
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().next_multiple_of(512), 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn plain() -> UnpackOptions {
        UnpackOptions::default()
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_tree_round_trips_with_its_modes() {
        use std::os::unix::fs::PermissionsExt;
        let d = scratch();
        let src = d.join("src");
        fs::create_dir_all(src.join("sub/deeper")).unwrap();
        fs::write(src.join("run.sh"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::write(src.join("sub/deeper/secret"), b"x").unwrap();
        fs::set_permissions(
            src.join("sub/deeper/secret"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink("../run.sh", src.join("sub/link")).unwrap();
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o555)).unwrap();
        let mut tar = Vec::new();
        pack(&src, "src", &mut tar).unwrap();

        // Into an existing directory, and as a new name; the second with --archive.
        let into = d.join("into");
        fs::create_dir(&into).unwrap();
        Destination::of(&into, plain())
            .unwrap()
            .unpack(&tar[..])
            .unwrap();
        let renamed = d.join("renamed");
        let archive = UnpackOptions {
            archive: true,
            ..plain()
        };
        Destination::of(&renamed, archive)
            .unwrap()
            .unpack(&tar[..])
            .unwrap();
        for (top, setuid) in [(into.join("src"), 0), (renamed, 0o4000)] {
            assert_eq!(mode(&top.join("run.sh")), 0o755 | setuid);
            assert_eq!(mode(&top.join("sub/deeper/secret")), 0o600);
            assert_eq!(mode(&top.join("sub")), 0o555);
            assert_eq!(
                fs::read_link(top.join("sub/link")).unwrap(),
                Path::new("../run.sh")
            );
            assert_eq!(fs::read(top.join("sub/deeper/secret")).unwrap(), b"x");
        }
        for p in [into.join("src/sub"), d.join("renamed/sub"), src.join("sub")] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::remove_dir_all(&d).unwrap();
    }

    /// The race a local user could run against root's `cp`: a directory the unpack made is
    /// swapped for a link to elsewhere before its mode is set and files go into it. Neither
    /// the mode nor a file reaches what the link points to.
    #[test]
    fn a_directory_swapped_for_a_link_mid_unpack_is_not_followed() {
        use tar::EntryType::{Directory, Regular};
        let d = scratch();
        let dest = d.join("dest");
        let outside = d.join("outside");
        fs::create_dir(&dest).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("shadow"), b"secret").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
        let mut archive = crafted(&[("d/", Directory, "", b""), ("d/f", Regular, "", b"x")]);
        // The directory asks for 0777.
        archive[100..108].copy_from_slice(b"0000777\0");
        let mut h = tar::Header::from_byte_slice(&archive[..512]).clone();
        h.set_cksum();
        archive[..512].copy_from_slice(h.as_bytes());
        let dest_d = dest.join("d");
        let to = outside.clone();
        let target = Destination::of(&dest, plain()).unwrap();
        *target.after_entry.lock().unwrap() = Some(Box::new(move |made: &Path| {
            if made.ends_with("d") {
                fs::rename(&dest_d, dest_d.with_extension("moved")).unwrap();
                std::os::unix::fs::symlink(&to, &dest_d).unwrap();
            }
        }));
        let err = target.unpack(&archive[..]).unwrap_err();
        assert!(matches!(err, UnpackError::ThroughLink { .. }), "{err}");
        assert_eq!(mode(&outside), 0o700, "the mode went through the link");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            1,
            "a file went through"
        );

        // The directory alone: swapped after its last entry, when only its mode is left to
        // set (what a chmod by path at the end would have followed).
        fs::remove_file(dest.join("d")).unwrap();
        let dest_d = dest.join("d");
        let to = outside.clone();
        let target = Destination::of(&dest, plain()).unwrap();
        *target.after_entry.lock().unwrap() = Some(Box::new(move |_: &Path| {
            fs::rename(&dest_d, dest_d.with_extension("again")).unwrap();
            std::os::unix::fs::symlink(&to, &dest_d).unwrap();
        }));
        let just_the_dir = [&archive[..512], &[0u8; 1024][..]].concat();
        let err = target.unpack(&just_the_dir[..]).unwrap_err();
        assert!(matches!(err, UnpackError::ThroughLink { .. }), "{err}");
        assert_eq!(mode(&outside), 0o700, "the mode went through the link");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn zeros_become_holes_and_the_length_is_kept() {
        use std::os::unix::fs::MetadataExt;
        let d = scratch();
        let mut data = vec![0u8; 8 << 20];
        data[3 << 20] = 1;
        *data.last_mut().unwrap() = 0;
        let archive = crafted(&[("sparse", tar::EntryType::Regular, "", &data)]);
        Destination::of(&d, plain())
            .unwrap()
            .unpack(&archive[..])
            .unwrap();
        let m = fs::metadata(d.join("sparse")).unwrap();
        assert_eq!(m.len(), 8 << 20);
        // One 4 KiB block written of 2048 (st_blocks counts 512-byte units).
        assert!(m.blocks() <= 64, "{} blocks", m.blocks());
        assert_eq!(fs::read(d.join("sparse")).unwrap(), data);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn names_are_shown_with_their_control_characters_escaped() {
        let d = scratch();
        let archive = crafted(&[("\x1b[31mred/../x", tar::EntryType::Regular, "", b"x")]);
        let err = Destination::of(&d, plain())
            .unwrap()
            .unpack(&archive[..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\\x1b[31mred"), "{err}");
        assert!(!err.contains('\x1b'), "{err:?}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_destination_of_another_user_or_a_link_is_refused_unless_forced() {
        // SAFETY: no memory effects.
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test runs as root");
        let d = scratch();
        let theirs = d.join("theirs");
        fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(4321), Some(4321)).unwrap();
        let err = Destination::of(&theirs, plain()).err().unwrap();
        assert!(
            matches!(err, UnpackError::ForeignOwner { uid: 4321, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("--force"), "{err}");
        let forced = UnpackOptions {
            force: true,
            ..plain()
        };
        let archive = crafted(&[("f", tar::EntryType::Regular, "", b"x")]);
        Destination::of(&theirs, forced)
            .unwrap()
            .unpack(&archive[..])
            .unwrap();
        assert_eq!(fs::read(theirs.join("f")).unwrap(), b"x");
        // As a new name inside it: the same directory, the same refusal.
        assert!(Destination::of(&theirs.join("new"), plain()).is_err());
        let link = d.join("link");
        std::os::unix::fs::symlink(&theirs, &link).unwrap();
        assert!(matches!(
            Destination::of(&link, forced),
            Err(UnpackError::LinkDestination(_))
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn nothing_is_written_outside_the_destination() {
        use tar::EntryType::{Link, Regular, Symlink};
        let d = scratch();
        let dest = d.join("dest");
        fs::create_dir(&dest).unwrap();
        let unpack = |entries: &[(&str, tar::EntryType, &str, &[u8])]| {
            Destination::of(&dest, plain())
                .unwrap()
                .unpack(&crafted(entries)[..])
        };
        assert!(matches!(
            unpack(&[("../evil", Regular, "", b"x")]),
            Err(UnpackError::Outside(_))
        ));
        assert!(matches!(
            unpack(&[("/tmp/evil", Regular, "", b"x")]),
            Err(UnpackError::Outside(_))
        ));
        assert!(matches!(
            unpack(&[("a/../../evil", Regular, "", b"x")]),
            Err(UnpackError::Outside(_))
        ));
        // A link the archive makes, then a file through it.
        let outside = d.join("outside");
        fs::create_dir(&outside).unwrap();
        let target = outside.to_str().unwrap();
        assert!(matches!(
            unpack(&[("l", Symlink, target, b""), ("l/evil", Regular, "", b"x")]),
            Err(UnpackError::ThroughLink { .. })
        ));
        // A hard link to a file outside.
        assert!(matches!(
            unpack(&[("h", Link, "../outside/f", b"")]),
            Err(UnpackError::Outside(_))
        ));
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "written outside"
        );
        assert!(!d.join("evil").exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
