//! The hook shim: a small process of berth's own binary (`berth __hook-shim <hook>`) that
//! stands between berth and each hook run, so that **nothing a hook starts outlives it**, not
//! even a child that left the hook's process group with `setsid` and was orphaned by a
//! double fork.
//!
//! The shim makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`): every process the hook
//! orphans is re-parented to the shim instead of to init, so the shim's descendants in `/proc`
//! are exactly what the hook left, however it forked. When the hook exits, or when berth asks
//! (it closes the shim's stdin: on a timeout, or because berth itself exited or was killed),
//! the shim kills all of them, reaps them, and exits with the hook's own status.
//!
//! Why a process of its own and not berth as the subreaper: a subreaper must reap what it
//! inherits, and berth's tokio waits on its own children by pid; a `waitpid(-1)` in berth
//! could take the status of a child tokio waits on. The shim runs no runtime and has no other
//! children, so reaping everything is safe there. Why stdin and not a parent-death signal:
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, and tokio's threads come and
//! go; a pipe closes only when berth's process is gone or lets go of it.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The hidden first argument that makes `berth` a hook shim.
pub const ARG: &str = "__hook-shim";

/// The program that runs a shim: this very binary, even if its file was replaced since.
pub const EXE: &str = "/proc/self/exe";

/// Set by `berth`'s `main` ([`run_if_asked`]): only then is this process's binary one that
/// can be a shim (not a test or bench binary linking the library).
static AVAILABLE: AtomicBool = AtomicBool::new(false);

/// Whether hooks can be run through a shim in this process.
pub fn available() -> bool {
    AVAILABLE.load(Ordering::Relaxed)
}

/// Called first thing in `main`: runs the shim and exits when the arguments ask for it, else
/// notes that shims can be started from this binary and returns.
pub fn run_if_asked() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(ARG)) {
        AVAILABLE.store(true, Ordering::Relaxed);
        return;
    }
    let Some(hook) = args.next() else {
        eprintln!("berth {ARG}: no hook given");
        std::process::exit(2);
    };
    std::process::exit(shim(hook))
}

/// Runs `hook` as the subreaper of all it starts; returns the exit code to leave with.
fn shim(hook: OsString) -> i32 {
    // SAFETY: plain prctl on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        eprintln!("berth {ARG}: cannot become a subreaper: {e}");
        return 126;
    }
    let child = match spawn(&hook) {
        Ok(child) => child,
        Err(e) => {
            eprintln!("berth {ARG}: cannot run {}: {e}", hook.to_string_lossy());
            return 127;
        }
    };
    let pid = child.id() as i32;
    let mut status = wait_for_hook_or_berth(pid);
    kill_descendants(&mut status, pid);
    let _ = std::io::stderr().flush();
    leave_with(status)
}

/// Starts the hook, trying "text file busy" again for a moment (as `hooks::spawn` does: a
/// writer of the script that has not closed it yet).
fn spawn(hook: &OsString) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match Command::new(hook).stdin(Stdio::null()).spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Waits until the hook exits (its wait status) or berth closes stdin (None).
fn wait_for_hook_or_berth(pid: i32) -> Option<i32> {
    // SAFETY: pidfd_open on our own child; -1 (an old kernel) falls back to a timed poll.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout = if pidfd < 0 { 20 } else { -1 };
        // SAFETY: two valid pollfd entries (a negative fd is ignored by poll).
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if let Some(status) = reap(pid) {
            return Some(status);
        }
        if fds[0].revents != 0 && berth_let_go() {
            return None;
        }
    }
}

/// Whether stdin says berth is gone or asks to stop (end of file, or any error).
fn berth_let_go() -> bool {
    let mut byte = [0u8; 64];
    // SAFETY: reading into a buffer we own.
    let n = unsafe { libc::read(0, byte.as_mut_ptr().cast(), byte.len()) };
    n <= 0
}

/// `pid`'s wait status if it has exited.
fn reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    (unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid).then_some(status)
}

/// Kills every descendant of this process and reaps them all; the hook's status is kept in
/// `status` if it is reaped here. Each round rescans, so a fork between a scan and its kill
/// is caught by the next round (its orphan comes to us).
fn kill_descendants(status: &mut Option<i32>, hook: i32) {
    let me = std::process::id() as i32;
    loop {
        for pid in descendants(me) {
            // SAFETY: a plain kill of a process that descends from this one.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut reaped_any = false;
        loop {
            let mut st = 0;
            // SAFETY: this process has no children but the hook's tree.
            match unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } {
                -1 => return, // ECHILD: nothing is left
                0 => break,
                pid => {
                    reaped_any = true;
                    if pid == hook {
                        *status = Some(st);
                    }
                }
            }
        }
        if !reaped_any {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Every process whose chain of parents reaches `root`, from `/proc`.
fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = parent(pid) {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// Field 4 of `/proc/<pid>/stat`.
fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Leaves as the hook did: its exit code, or killed by its signal (so berth reports
/// "signal 9" as it would for the hook itself). A hook berth stopped has no status: SIGKILL.
fn leave_with(status: Option<i32>) -> i32 {
    let status = std::process::ExitStatus::from_raw(status.unwrap_or(libc::SIGKILL));
    if let Some(code) = status.code() {
        return code;
    }
    let signal = status.signal().unwrap_or(libc::SIGKILL);
    // SAFETY: default action for the signal, then sent to ourselves.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::kill(libc::getpid(), signal);
    }
    128 + signal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_are_found_through_every_generation() {
        // sh -> sh -> sleep: the grandchild is found through its parent.
        let mut child = Command::new("sh")
            .args(["-c", "sh -c 'sleep 30; :' & wait"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let started = std::time::Instant::now();
        let found = loop {
            let found = descendants(pid);
            if found.len() == 2 || started.elapsed() > Duration::from_secs(10) {
                break found;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        for p in found.iter().chain([&pid]) {
            // SAFETY: processes this test started.
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
        child.wait().unwrap();
        assert_eq!(found.len(), 2, "a child and a grandchild: {found:?}");
        assert!(
            found.iter().all(|p| *p != pid),
            "the root is not its own descendant"
        );
    }

    #[test]
    fn the_parent_of_this_process_is_read_from_proc() {
        // SAFETY: getppid cannot fail.
        let ppid = unsafe { libc::getppid() };
        assert_eq!(parent(std::process::id() as i32), Some(ppid));
    }

    #[test]
    fn an_exit_code_is_passed_on() {
        assert_eq!(leave_with(Some(3 << 8)), 3);
        assert_eq!(leave_with(Some(0)), 0);
    }
}
