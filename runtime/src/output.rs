//! Where an output file's bytes go — one definition for `mcc` and the executables it builds:
//! `-` is standard output; a device or FIFO (`/dev/stdout`, a pipe) is written directly,
//! since it cannot be replaced; a regular file (or a new name) is replaced through a
//! temporary sibling and a rename, so readers see the old bytes or the new ones; a symbolic
//! link is followed deliberately (the file it points to is replaced, the link stays).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How an output path is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output (`-`).
    Stdout,
    /// A device or FIFO: opened and written as it is.
    Through(PathBuf),
    /// A regular file or a new name (links resolved): replaced by rename.
    Replace(PathBuf),
}

/// Links followed before giving up (a loop, or a chain that long).
const MAX_LINKS: u32 = 8;

/// What writing `path` means. A folder, or a chain of more than 8 links, is an error of kind
/// `InvalidInput`.
pub fn target(path: &Path) -> io::Result<Target> {
    let mut path = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        if path.as_os_str() == "-" {
            return Ok(Target::Stdout);
        }
        // What the path is, following links: a link to a device (`/dev/stdout`) goes through.
        if let Ok(m) = std::fs::metadata(&path)
            && !m.is_file()
        {
            if m.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("`{}` is a folder; give a file name", path.display()),
                ));
            }
            return Ok(Target::Through(path));
        }
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Ok(Target::Replace(path));
        }
        // A link to a file, or a dangling one (its target is created).
        path = match std::fs::canonicalize(&path) {
            Ok(t) => t,
            Err(_) => parent_of(&path).join(std::fs::read_link(&path)?),
        };
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("`{}`: too many levels of symbolic links", path.display()),
    ))
}

/// `target`'s folder (`.` for a bare name).
pub fn parent_of(target: &Path) -> &Path {
    target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The temporary sibling for replacing `target`: `.NAME.partial-PID` beside it.
pub fn partial_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().to_string());
    parent_of(target).join(format!(".{name}.partial-{}", std::process::id()))
}

/// Writes `bytes` to a target that is not replaced (standard output, a device, a FIFO).
pub fn write_unreplaced(target: &Target, bytes: &[u8]) -> io::Result<()> {
    match target {
        Target::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()
        }
        Target::Through(p) | Target::Replace(p) => {
            let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
            f.write_all(bytes)?;
            f.flush()
        }
    }
}

/// Writes `bytes` to `path` as [`target`] says, replacing a regular file through
/// [`partial_name`] (removed again on failure).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match target(path)? {
        Target::Replace(p) => {
            let tmp = partial_name(&p);
            let res = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &p));
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res
        }
        other => write_unreplaced(&other, bytes),
    }
}
