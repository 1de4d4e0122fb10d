//! What `serve` sets on its own process before it starts anything: the open-file limit.

/// Raises the soft open-file limit to the hard one: every client connection is a
/// descriptor, and the loop, the watcher and the database need theirs too (a service
/// manager's usual 1 024 runs out under a few hundred slow clients). Returns (before, after).
pub fn raise_descriptor_limit() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        let before = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return (before, before);
        }
        (before, lim.rlim_cur)
    }
}
