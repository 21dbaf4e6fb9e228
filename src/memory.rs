//! Giving back the binary's code pages while the daemon waits between passes.
//!
//! Measured at 200 instances after a pass (`certsync run`, issue 10): about 13.5 MiB resident,
//! of which only about 3.3 MiB is the process's own memory (heap, arenas, stacks) and about
//! 10 MiB is clean pages of the executable's code and read-only data, mapped in by the pass
//! and kept by the kernel until memory runs short. In a container those pages count toward
//! the cgroup's working set. After a pass, [`release_code_pages`] tells the kernel
//! (`madvise(MADV_PAGEOUT)`, Linux 5.4) that this process is done with them: idle RSS falls
//! to about 6 MiB, and the next pass reads back what it runs (a few hundred page faults,
//! about 5 ms).
//!
//! Owns: finding the executable's non-writable mappings and advising on them. Must not:
//! touch a writable mapping, a shared library's (other processes use them), or anything
//! that is not file-backed; fail a pass (every error is ignored: an older kernel answers
//! EINVAL, and the pages then simply stay).

/// Advises the kernel to reclaim the executable's clean code and read-only pages; gives how
/// many bytes of mappings it accepted the advice for (0 on a kernel without MADV_PAGEOUT).
pub fn release_code_pages() -> usize {
    let Some(exe) = executable() else {
        return 0;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    maps.lines()
        .filter_map(|line| code_mapping(line, &exe))
        .filter(|&(start, len)| page_out(start, len))
        .map(|(_, len)| len)
        .sum()
}

/// This process's executable, as /proc names it in its maps.
fn executable() -> Option<String> {
    std::fs::read_link("/proc/self/exe")
        .ok()?
        .to_str()
        .map(str::to_owned)
}

/// The start and length of a line of `/proc/self/maps` that maps `exe` without write
/// permission (`r-xp`, `r--p`).
fn code_mapping(line: &str, exe: &str) -> Option<(usize, usize)> {
    // "start-end perms offset dev inode path": the path is the rest of the line.
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let path = fields.nth(3)?.trim_start();
    if path != exe || perms.len() != 4 || perms.as_bytes()[1] != b'-' {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    Some((start, end.checked_sub(start).filter(|len| *len > 0)?))
}

/// Whether the kernel took the advice.
#[allow(unsafe_code)]
fn page_out(start: usize, len: usize) -> bool {
    // SAFETY: the range is one whole mapping the kernel listed for this process in
    // /proc/self/maps: a private, non-writable mapping of the executable file. MADV_PAGEOUT
    // is advice and changes no content: clean file pages are read back from the file at the
    // next access, and the copied-on-write pages of the read-only-after-relocation segment
    // (RELRO, also `r--p`) are swapped out and back like any anonymous page, or stay when
    // there is no swap. Pages other processes map too are left alone by the kernel. A range
    // the kernel no longer maps is refused with an error, which is ignored like every other.
    let advised = unsafe {
        rustix::mm::madvise(
            start as *mut core::ffi::c_void,
            len,
            rustix::mm::Advice::LinuxPageOut,
        )
    };
    advised.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXE: &str = "/usr/bin/certsync";

    #[test]
    fn only_the_executables_read_only_mappings_are_chosen() {
        let line = |perms: &str, path: &str| {
            format!(
                "55d0c0a00000-55d0c0b00000 {perms} 00001000 fe:01 1234                       {path}"
            )
        };
        assert_eq!(
            code_mapping(&line("r-xp", EXE), EXE),
            Some((0x55d0_c0a0_0000, 0x10_0000))
        );
        assert!(code_mapping(&line("r--p", EXE), EXE).is_some());
        assert_eq!(code_mapping(&line("rw-p", EXE), EXE), None);
        assert_eq!(
            code_mapping(&line("r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6"), EXE),
            None
        );
        assert_eq!(
            code_mapping(&line("r-xp", &format!("{EXE} (deleted)")), EXE),
            None
        );
        assert_eq!(
            code_mapping("7ffd1000-7ffd2000 rw-p 00000000 00:00 0   [stack]", EXE),
            None
        );
        assert_eq!(code_mapping("garbage", EXE), None);
        assert_eq!(
            code_mapping("2000-1000 r-xp 0 0:0 1 /usr/bin/certsync", EXE),
            None
        );
    }

    /// The resident bytes of this test binary's own mappings (/proc/self/smaps).
    fn resident_of_executable() -> u64 {
        let exe = executable().expect("/proc/self/exe");
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
        let mut ours = false;
        let mut kib = 0;
        for line in smaps.lines() {
            if let Some(rest) = line.strip_prefix("Rss:") {
                if ours {
                    kib += rest
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .unwrap_or(0);
                }
            } else if line
                .split_whitespace()
                .next()
                .is_some_and(|f| f.contains('-'))
            {
                ours = line.ends_with(exe.as_str());
            }
        }
        kib * 1024
    }

    #[test]
    fn released_code_pages_leave_the_resident_set_and_the_code_still_runs() {
        let before = resident_of_executable();
        let advised = release_code_pages();
        let after = resident_of_executable();
        eprintln!("advised {advised} bytes: resident {before} -> {after}");
        if advised > 0 {
            assert!(
                after < before,
                "{advised} bytes advised, yet {before} bytes resident before and {after} after"
            );
        }
        // The code just paged out runs again.
        assert_eq!(release_code_pages(), advised);
    }
}
