//! The hook shim: a small process of berth's own binary (`berth __hook-shim <hook> [args]`)
//! that stands between berth and each hook run, so that **nothing a hook starts outlives it**,
//! not even a child that left the hook's process group with `setsid` and was orphaned by a
//! double fork. A build's docker CLI runs under one too (`runtime::builder`): a killed berth
//! then leaves no build running.
//!
//! The shim makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`): every process the hook
//! orphans is re-parented to the shim instead of to init, so the shim's descendants in `/proc`
//! are exactly what the hook left, however it forked. When the hook exits, or when berth asks
//! (it closes the shim's stdin: on a timeout, or because berth itself exited or was killed),
//! the shim kills all of them, reaps them, and exits with the hook's own status. A SIGTERM,
//! SIGINT or SIGHUP to the shim (systemd stopping berth, an operator) does the same, and the
//! shim then leaves by that signal: the signals are blocked and read from a signalfd in the
//! same poll, so none can end the shim before it has killed the tree.
//!
//! The shim signals only its own children, never a pid found further down in `/proc`: a
//! child stays this process's (alive, or a zombie) until the shim reaps it, so its pid cannot
//! be reused between the scan and the kill; a grandchild's could (its parent reaps it). A
//! killed child's children are re-parented to the shim and killed in the next round.
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
    std::process::exit(shim(hook, args.collect()))
}

/// Runs `hook` with `args` as the subreaper of all it starts; returns the exit code to leave
/// with.
fn shim(hook: OsString, args: Vec<OsString>) -> i32 {
    // SAFETY: plain prctl on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        eprintln!("berth {ARG}: cannot become a subreaper: {e}");
        return 126;
    }
    // Blocked before the hook starts, so a signal sent at any time waits in the signalfd
    // (the hook itself starts with an empty mask: `Command` resets it in the child).
    let signals = match block_stop_signals() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("berth {ARG}: cannot block the stop signals: {e}");
            return 126;
        }
    };
    let child = match spawn(&hook, &args) {
        Ok(child) => child,
        Err(e) => {
            eprintln!("berth {ARG}: cannot run {}: {e}", hook.to_string_lossy());
            return 127;
        }
    };
    let pid = child.id() as i32;
    let (mut status, signal) = match wait_for_hook_or_berth(pid, signals) {
        Ended::Hook(status) => (Some(status), None),
        Ended::Berth => (None, None),
        Ended::Signal(signal) => (None, Some(signal)),
    };
    kill_tree(&mut status, pid);
    let _ = std::io::stderr().flush();
    leave_with(signal.or(status))
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this process; a signalfd that reads them.
fn block_stop_signals() -> std::io::Result<i32> {
    // SAFETY: a sigset on the stack, filled by sigemptyset/sigaddset before use; this
    // process has one thread, so sigprocmask is its mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// The signal waiting in `signalfd`, if one is.
fn stop_signal(signalfd: i32) -> Option<i32> {
    // SAFETY: an all-zero signalfd_siginfo is valid; read fills at most its size.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reading into a struct we own, of its own size.
    let n = unsafe {
        libc::read(
            signalfd,
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    };
    (n == size as isize).then_some(info.ssi_signo as i32)
}

/// Starts the hook, trying "text file busy" again for a moment (as `hooks::spawn` does: a
/// writer of the script that has not closed it yet).
fn spawn(hook: &OsString, args: &[OsString]) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match Command::new(hook).args(args).stdin(Stdio::null()).spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Why the shim stops waiting.
enum Ended {
    /// The hook exited: its wait status.
    Hook(i32),
    /// Berth closed stdin (gone, or asking the run to stop).
    Berth,
    /// A stop signal reached the shim.
    Signal(i32),
}

/// Waits until the hook exits, berth closes stdin or a stop signal arrives on `signalfd`.
fn wait_for_hook_or_berth(pid: i32, signalfd: i32) -> Ended {
    // SAFETY: pidfd_open on our own child; -1 (an old kernel) falls back to a timed poll.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    loop {
        let mut fds = [0, pidfd, signalfd].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        let timeout = if pidfd < 0 { 20 } else { -1 };
        // SAFETY: three valid pollfd entries (a negative fd is ignored by poll).
        unsafe { libc::poll(fds.as_mut_ptr(), 3, timeout) };
        if let Some(signal) = stop_signal(signalfd) {
            return Ended::Signal(signal);
        }
        if let Some(status) = reap(pid) {
            return Ended::Hook(status);
        }
        if fds[0].revents != 0 && berth_let_go() {
            return Ended::Berth;
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

/// Kills everything the hook left and reaps it all; the hook's status is kept in `status` if
/// it is reaped here. Each round kills this process's children only (see the module's
/// doc); what they started comes to this subreaper and is killed in a later round, and a
/// fork between a scan and its kill is caught the same way.
fn kill_tree(status: &mut Option<i32>, hook: i32) {
    let me = std::process::id() as i32;
    loop {
        for pid in children(me) {
            // SAFETY: a child of this process, not reaped yet, so its pid is still its own.
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

/// The processes whose parent is `parent`, from `/proc`.
fn children(parent_pid: i32) -> Vec<i32> {
    let pids = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    pids.filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| parent(*pid) == Some(parent_pid))
        .collect()
}

/// Field 4 of `/proc/<pid>/stat`.
fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Leaves as the hook did: its exit code, or killed by its signal (so berth reports
/// "signal 9" as it would for the hook itself). A hook berth stopped has no status: SIGKILL.
/// A shim stopped by a signal leaves by that signal (`status` is then the signal number,
/// which is also the wait status of a process it killed).
fn leave_with(status: Option<i32>) -> i32 {
    let status = std::process::ExitStatus::from_raw(status.unwrap_or(libc::SIGKILL));
    if let Some(code) = status.code() {
        return code;
    }
    let signal = status.signal().unwrap_or(libc::SIGKILL);
    // SAFETY: default action for the signal, unblocked (a stop signal is blocked here), then
    // sent to ourselves.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::kill(libc::getpid(), signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    128 + signal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_children_are_found_not_grandchildren() {
        // sh -> sh -> sleep, all started when "started" is read.
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .args(["-c", "sh -c 'sleep 30 & echo started; wait' & wait"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        let found = children(pid);
        let below = found.first().map(|p| children(*p)).unwrap_or_default();
        // SAFETY: the process group this test started.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        child.wait().unwrap();
        assert_eq!(line.trim(), "started");
        assert_eq!(
            found.len(),
            1,
            "the shell's one child, not its grandchild: {found:?}"
        );
        assert_eq!(
            below.len(),
            1,
            "the grandchild, as its parent's child: {below:?}"
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
