//! The local half of `cp`: a file or directory packed into the tar archive the engine
//! takes, and the engine's archive unpacked here — never outside its destination.
//!
//! Unpacking refuses (and stops at) an entry whose path is absolute or has a `..`, a hard
//! link to such a path, and any entry that would be written through a symbolic link (one
//! the archive made or one already there). Symbolic links themselves are made as they are
//! in the archive, as `docker cp` and `tar` make them. Modes (all bits) and modification
//! times are kept; ownership is the local user's.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;

/// Why unpacking stopped.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("the archive entry {0:?} points outside the destination: refused")]
    Outside(String),
    #[error(
        "the archive entry {entry:?} would be written through the symbolic link {link}: refused"
    )]
    ThroughLink { entry: String, link: PathBuf },
    #[error("no directory {0} to copy into")]
    NoParent(PathBuf),
    #[error("cannot copy a directory onto the file {0}")]
    DirOntoFile(PathBuf),
    #[error("reading the archive: {0}")]
    Read(#[source] io::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
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

/// Where an archive of a path unpacks locally, as `docker cp` decides it: into `dest` when
/// it is a directory; otherwise as `dest` itself (the archive's top entry renamed), in its
/// parent, which must exist.
pub struct Destination {
    base: PathBuf,
    rename: Option<String>,
}

impl Destination {
    pub fn of(dest: &Path) -> Result<Destination, UnpackError> {
        if fs::metadata(dest).is_ok_and(|m| m.is_dir()) {
            return Ok(Destination {
                base: dest.to_owned(),
                rename: None,
            });
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        if !fs::metadata(&parent).is_ok_and(|m| m.is_dir()) {
            return Err(UnpackError::NoParent(parent));
        }
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| UnpackError::NoParent(dest.to_owned()))?;
        Ok(Destination {
            base: parent,
            rename: Some(name),
        })
    }

    /// An entry's path, checked and (for a renamed top entry) renamed, under the base.
    fn place(&self, entry: &Path) -> Result<PathBuf, UnpackError> {
        let shown = || entry.to_string_lossy().into_owned();
        let mut parts = Vec::new();
        for c in entry.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_owned()),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(UnpackError::Outside(shown()))
                }
            }
        }
        if parts.is_empty() {
            return Err(UnpackError::Outside(shown()));
        }
        if let Some(name) = &self.rename {
            parts[0] = name.into();
        }
        Ok(parts.iter().fold(self.base.clone(), |p, c| p.join(c)))
    }

    /// No directory between the base and `path` may be a symbolic link.
    fn no_link_above(&self, path: &Path, entry: &str) -> Result<(), UnpackError> {
        let mut at = self.base.clone();
        let rel = path.strip_prefix(&self.base).unwrap_or(path);
        let mut parts: Vec<_> = rel.components().collect();
        parts.pop();
        for c in parts {
            at.push(c);
            if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(UnpackError::ThroughLink {
                    entry: entry.to_owned(),
                    link: at,
                });
            }
        }
        Ok(())
    }

    /// Unpacks the archive `input` brings. Directories get their modes and times last, so
    /// that a read-only one can still be filled.
    pub fn unpack(&self, input: impl Read) -> Result<u64, UnpackError> {
        let mut archive = tar::Archive::new(input);
        let mut dirs = Vec::new();
        let mut count = 0;
        let write = |path: &Path| {
            let path = path.to_owned();
            move |source| UnpackError::Write { path, source }
        };
        for entry in archive.entries().map_err(UnpackError::Read)? {
            let mut entry = entry.map_err(UnpackError::Read)?;
            entry.set_preserve_permissions(true);
            let name = entry.path().map_err(UnpackError::Read)?.into_owned();
            let shown = name.to_string_lossy().into_owned();
            let target = self.place(&name)?;
            self.no_link_above(&target, &shown)?;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                if fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
                    return Err(UnpackError::DirOntoFile(target));
                }
                fs::create_dir_all(&target).map_err(write(&target))?;
                let mode = entry.header().mode().map_err(UnpackError::Read)?;
                let mtime = entry.header().mtime().unwrap_or(0);
                dirs.push((target, mode, mtime));
            } else if kind.is_hard_link() {
                let link = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| UnpackError::Outside(shown.clone()))?
                    .into_owned();
                let source = self.place(&link)?;
                self.no_link_above(&source, &shown)?;
                let _ = fs::remove_file(&target);
                fs::hard_link(&source, &target).map_err(write(&target))?;
            } else {
                if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    return Err(UnpackError::DirOntoFile(target));
                }
                entry.unpack(&target).map_err(write(&target))?;
            }
            count += 1;
        }
        for (dir, mode, mtime) in dirs.into_iter().rev() {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(write(&dir))?;
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
            let _ = fs::File::open(&dir).and_then(|f| f.set_modified(t));
        }
        Ok(count)
    }
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

        // Into an existing directory, and as a new name.
        let into = d.join("into");
        fs::create_dir(&into).unwrap();
        Destination::of(&into).unwrap().unpack(&tar[..]).unwrap();
        let renamed = d.join("renamed");
        Destination::of(&renamed).unwrap().unpack(&tar[..]).unwrap();
        for top in [into.join("src"), renamed] {
            let mode = |p: &str| {
                fs::symlink_metadata(top.join(p))
                    .unwrap()
                    .permissions()
                    .mode()
            };
            assert_eq!(mode("run.sh") & 0o7777, 0o4755);
            assert_eq!(mode("sub/deeper/secret") & 0o777, 0o600);
            assert_eq!(mode("sub") & 0o777, 0o555);
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

    #[test]
    fn nothing_is_written_outside_the_destination() {
        use tar::EntryType::{Link, Regular, Symlink};
        let d = scratch();
        let dest = d.join("dest");
        fs::create_dir(&dest).unwrap();
        let unpack = |entries: &[(&str, tar::EntryType, &str, &[u8])]| {
            Destination::of(&dest)
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
