//! Keeping real servers from outliving the sandbox process. On Linux every child gets a
//! parent-death signal; long-running servers are forked from one thread that lives as
//! long as the process, because the signal fires when the forking *thread* ends (tokio's
//! blocking threads come and go). Data directories carry the owning process id in their
//! name, so a later start removes those of a sandbox that was killed.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc;

pub const DIR_PREFIX: &str = "aiven-sandbox-";

/// The child is killed when this process dies (Linux; elsewhere the orderly stop and the
/// start-time cleanup remain). PostgreSQL's own children follow their postmaster.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: the closure only makes two system calls and allocates nothing.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // The parent may have died before the signal was armed.
                if std::os::unix::process::parent_id() != parent {
                    return Err(nix::errno::Errno::ESRCH.into());
                }
                Ok(())
            });
        }
    }
    cmd
}

type Request = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns a server from the process-long spawner thread.
pub fn spawn_server(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        // The sender lives in a static, so this thread never ends.
        std::thread::Builder::new()
            .name("sandbox-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(die_with_parent(&mut cmd).spawn());
                }
            })
            .expect("the sandbox can start a thread");
        tx
    });
    let gone = || io::Error::other("the sandbox's spawner thread is gone");
    let (reply, answer) = mpsc::channel();
    spawner.send((cmd, reply)).map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

/// Creates `dir` (and, if `parents`, what leads to it) readable by its owner only: a
/// server's data and the saved world hold passwords and keys, and the bases are shared
/// temporary directories.
pub fn private_dir(dir: &Path, parents: bool) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(parents);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A new, empty data directory under `base`, named after this process, 0700.
pub fn new_dir(base: &Path) -> io::Result<PathBuf> {
    let pid = std::process::id();
    let dir = base.join(format!("{DIR_PREFIX}{pid}-{:08x}", rand::random::<u32>()));
    private_dir(&dir, false)?;
    if let Some(start) = start_time(pid) {
        std::fs::write(dir.join("owner"), start)?;
    }
    Ok(dir)
}

/// Removes the data directories under `bases` whose sandbox process is gone.
pub fn remove_stale(bases: &[PathBuf]) {
    for base in bases {
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(DIR_PREFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            let path = entry.path();
            if path.is_dir() && !owner_alive(pid, &path) {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => tracing::info!(
                        "sandbox: removed {} left by a sandbox that is gone",
                        path.display()
                    ),
                    Err(e) => tracing::warn!("sandbox: cannot remove {}: {e}", path.display()),
                }
            }
        }
    }
}

/// Alive, and the same process that made the directory (pids are reused).
fn owner_alive(pid: u32, dir: &Path) -> bool {
    match (start_time(pid), std::fs::read_to_string(dir.join("owner"))) {
        (None, _) => false,
        (Some(now), Ok(recorded)) => now == recorded.trim(),
        (Some(_), Err(_)) => true,
    }
}

/// When a live process started (clock ticks since boot); `None` if it is dead or a
/// zombie.
#[cfg(target_os = "linux")]
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command: state is the 1st, starttime the 20th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19).map(|s| s.to_string())
}

/// Elsewhere only liveness is known.
#[cfg(all(unix, not(target_os = "linux")))]
fn start_time(pid: u32) -> Option<String> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).ok()?);
    nix::sys::signal::kill(pid, None)
        .ok()
        .map(|()| String::new())
}

#[cfg(not(unix))]
fn start_time(_pid: u32) -> Option<String> {
    Some(String::new())
}

/// Whether a user can reach (search) every directory down to `path`.
#[cfg(unix)]
pub fn reachable_by(path: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    path.ancestors().all(|dir| {
        std::fs::metadata(dir).is_ok_and(|m| {
            let bit = if m.uid() == uid {
                0o100
            } else if m.gid() == gid {
                0o010
            } else {
                0o001
            };
            m.mode() & bit != 0
        })
    })
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn data_directories_are_the_owners_only() {
        let base = std::env::temp_dir().join(format!("procs-test-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let dir = super::new_dir(&base).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        std::fs::remove_dir_all(&base).unwrap();
        assert_eq!(mode, 0o700);
    }
}
