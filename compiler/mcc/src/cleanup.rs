//! Partial outputs never outlive the process that writes them: every temporary file or
//! folder is registered here while it exists, and an interrupt (Ctrl-C, SIGTERM, SIGHUP)
//! removes them before `mcc` exits with status 130. Temporary folders that a killed process
//! (SIGKILL, a power cut) left behind are found by name and removed by the next build into
//! the same place ([`remove_stale`]).
//!
//! **Invariant:** a registered path is removed exactly once — by its [`Pending`] guard when
//! the write ends, or by the interrupt handler — and the user's files are never registered.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static JSON: AtomicBool = AtomicBool::new(false);

/// Whether the interrupt is reported as JSON lines (`--message-format json`).
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// Installs the interrupt handler (once; later calls do nothing).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // If a handler cannot be installed (another library took the signals), interrupted
        // writes still leave only `.partial` names, which the next build removes.
        let _ = ctrlc::set_handler(|| {
            let paths = match PENDING.lock() {
                Ok(mut p) => std::mem::take(&mut *p),
                Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
            };
            for p in &paths {
                remove(p);
            }
            let message = "mcc: interrupted; nothing half-written was left behind";
            if JSON.load(Ordering::Relaxed) {
                let note = crate::diagnostics::note_json("error", "mcc::interrupted", message);
                let result = crate::diagnostics::result_json(false, 1, 0);
                {
                    use std::io::Write as _;
                    // Nobody to tell when standard error has gone: no panic over it.
                    let _ = writeln!(std::io::stderr(), "{note}\n{result}");
                }
            } else {
                {
                    use std::io::Write as _;
                    let _ = writeln!(std::io::stderr(), "{message}");
                }
            }
            std::process::exit(130);
        });
    });
}

fn remove(p: &Path) {
    if p.is_dir() {
        let _ = std::fs::remove_dir_all(p);
    } else {
        let _ = std::fs::remove_file(p);
    }
}

/// A temporary path being written: removed when dropped unless [`Pending::keep`] said it
/// reached its final name.
pub struct Pending {
    path: PathBuf,
    kept: bool,
}

impl Pending {
    /// Registers `path` (not yet created) for removal on interrupt or drop.
    pub fn new(path: PathBuf) -> Pending {
        install();
        if let Ok(mut p) = PENDING.lock() {
            p.push(path.clone());
        }
        Pending { path, kept: false }
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path was renamed into place: nothing to remove.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Ok(mut p) = PENDING.lock() {
            p.retain(|x| x != &self.path);
        }
        if !self.kept {
            remove(&self.path);
        }
    }
}

pub use mcc_runtime::output::{parent_of, partial_name};

/// Removes `.NAME.partial-PID`, `.NAME.native-PID` and `.NAME.old-PID` entries beside
/// `target` whose process no longer runs (on Linux, where `/proc` tells; elsewhere nothing is
/// removed). Returns how many it removed.
pub fn remove_stale(target: &Path) -> usize {
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().to_string()) else {
        return 0;
    };
    if !Path::new("/proc/self").exists() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(parent_of(target)) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        let pid = [".partial-", ".old-", ".native-"].iter().find_map(|tag| {
            file.strip_prefix(&format!(".{name}{tag}"))
                .and_then(|p| p.parse::<u32>().ok())
        });
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new("/proc").join(pid.to_string()).exists()
        {
            // An old folder set aside by a build killed before its new one moved in is the
            // last complete output: put it back rather than lose it.
            if file.contains(".old-") && !target.exists() {
                let _ = std::fs::rename(e.path(), target);
            } else {
                remove(&e.path());
            }
            removed += 1;
        }
    }
    removed
}
