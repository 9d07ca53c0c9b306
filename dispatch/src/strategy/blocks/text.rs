//! Call instructions that can be re-pointed while threads run them: `textpoke`'s machine layer
//! (x86-64 Linux only).
//!
//! Each call instruction `textpoke` emits (see [`textpoke`](crate::strategy::textpoke)) records one
//! `Entry` in the linker section `textpoke_calls`: the address of its `call rel32`, the address
//! of its site's slow path, and the site it calls. The linker brackets the section with
//! `__start_textpoke_calls` and `__stop_textpoke_calls` (the static-keys crate's technique; the
//! section is marked retained, `R`, so that garbage collection keeps it). [`Text::open`](machine::Text::open) reads the
//! table once and makes the pages that hold the call instructions writable:
//!
//! 1. preferably through a *memfd double mapping*: the pages are copied into a memfd, which is
//!    mapped read+execute over the very same addresses and once more read+write elsewhere, so no
//!    mapping is ever writable and executable at once (it works under `PR_SET_MDWE`);
//! 2. else by `mprotect`ing them read+write+execute, once.
//!
//! Re-pointing a call ([`Text::point`](machine::Text::point)) is one aligned 4-byte store of its displacement (every
//! call is laid out with its rel32 on a 4-byte boundary), so a core that fetches the instruction
//! meanwhile sees the old or the new displacement, never a mix. That is what HotSpot relies on to
//! patch x86 call sites under running threads; the architecture manuals do not promise it for
//! instruction fetch, so the tear test in `textpoke` checks it on every machine CI runs on.
//! What they do promise is that a core that has executed a serializing instruction after the
//! store runs the new code: [`Text::sync`](machine::Text::sync) makes every running thread of the process do so,
//! with one `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)` (a thread not running
//! serializes when the kernel next returns to it). The registration that command needs is made
//! in [`Text::open`](machine::Text::open): it costs under a microsecond in a single-threaded process and 13 to 16 ms
//! once a second thread exists (an RCU grace period), so programs open the text before they
//! spawn threads (the harness probes every strategy first thing).
//!
//! A target farther than ±2 GiB from a call instruction does not fit a rel32: the call then goes
//! through its site's trampoline slot, an indirect `jmp` through an 8-byte word stored first.
//! Every [`Code`](crate::model::Code) of this workspace lives in the binary's own text, a few MiB
//! across, so that never happens here; a test forces it.

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
use crate::strategy::Unavailable;

/// The sites a call instruction may serve: one per fingerprinted function, as the harness allows.
pub(crate) const MAX_SITES: usize = crate::check::CODE_COUNT;

/// A site number reserved for the tests' own call instructions (the tear test): never a
/// strategy's site, so that making a strategy does not re-point them.
#[cfg_attr(not(all(target_arch = "x86_64", target_os = "linux")), allow(dead_code))]
pub(crate) const TEST_SITE: usize = MAX_SITES;

/// Where a call instruction should go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Its site's slow path.
    SlowPath,
    /// This code.
    Code(usize),
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) use machine::Text;

/// The machine layer proper: x86-64 instructions and Linux system calls.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod machine {
    use std::fmt::Write as _;
    use std::io;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

    use super::{MAX_SITES, TEST_SITE, Target};
    use crate::strategy::Unavailable;

    /// One call instruction, as its `asm!` block records it in `textpoke_calls`.
    #[repr(C)]
    struct Entry {
        /// The address of the `call` opcode; its rel32 follows at `call + 1`, 4-byte aligned.
        call: usize,
        /// Where it goes while a transition covers its site: the site's slow path.
        slow_path: usize,
        /// The site it calls, or [`ANCHOR_SITE`] for the anchor below.
        site: usize,
    }

    /// The anchor entry's site: not a call instruction.
    const ANCHOR_SITE: usize = usize::MAX;

    // The anchor: one entry that makes the section exist in every binary that links this module,
    // whether or not it has any call instruction, so that the bracketing symbols always resolve.
    // The flags must be the same in every `.pushsection` of this section (`textpoke`'s call sites).
    std::arch::global_asm!(
        ".pushsection textpoke_calls,\"awR\",@progbits",
        ".balign 8",
        ".quad 0, 0, {anchor}",
        ".popsection",
        anchor = const ANCHOR_SITE,
    );

    // The trampoline slots, one per site (and one for TEST_SITE), each 16 bytes:
    // `jmp qword ptr [rip + 2]` (6 bytes), `ud2` (2), then the 8-byte target at offset 8. Until a slot
    // is used its target is 0, so a stray jump into it faults at once.
    std::arch::global_asm!(
        ".pushsection .text.textpoke_trampolines,\"ax\",@progbits",
        ".balign 4096",
        ".globl dispatch_textpoke_trampolines",
        ".hidden dispatch_textpoke_trampolines",
        "dispatch_textpoke_trampolines:",
        ".rept {slots}",
        "jmp qword ptr [rip + 2]",
        "ud2",
        ".quad 0",
        ".endr",
        ".popsection",
        slots = const MAX_SITES + 1,
    );

    /// Bytes per trampoline slot, and the offset of its target word.
    const SLOT: usize = 16;
    const SLOT_TARGET: usize = 8;

    unsafe extern "C" {
        #[link_name = "__start_textpoke_calls"]
        static TABLE_START: Entry;
        #[link_name = "__stop_textpoke_calls"]
        static TABLE_STOP: Entry;
        #[link_name = "dispatch_textpoke_trampolines"]
        /// Atomics: written (through the writable view, which is the same memory when made by
        /// mprotect) while the program runs.
        static TRAMPOLINES: [AtomicU8; SLOT * (MAX_SITES + 1)];
    }

    /// Every entry of the call table, the anchor included.
    fn table() -> &'static [Entry] {
        let start = &raw const TABLE_START;
        // The length from the two addresses: the symbols are distinct statics to the compiler,
        // so no pointer arithmetic between them.
        let len = ((&raw const TABLE_STOP) as usize - start as usize) / std::mem::size_of::<Entry>();
        // SAFETY: the linker defines both symbols around the section, which holds only `Entry`s
        // (8-aligned, three words each, emitted by the `asm!` blocks and the anchor above, their
        // addresses filled in by the loader's relocations before `main`), one after the other; the
        // section lives as long as the program and nothing writes it after start-up.
        unsafe { std::slice::from_raw_parts(start, len) }
    }

    /// One call instruction, ready to be re-pointed.
    #[derive(Debug)]
    struct Call {
        /// Its rel32, through the writable view.
        rel32: &'static AtomicU32,
        /// The address the rel32 is relative to: the instruction after the call.
        next: usize,
        slow_path: usize,
    }

    /// The environment variable that picks how the text is made writable: `memfd` or `mprotect`
    /// (unset: the memfd double mapping, else mprotect). What the tests use to run both paths.
    pub(crate) const WRITABLE_VAR: &str = "DISPATCH_TEXTPOKE_TEXT";

    /// How the call instructions were made writable.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Writable {
        /// A memfd mapped read+execute over the text and read+write elsewhere.
        MemfdAlias,
        /// The text pages themselves, read+write+execute.
        MprotectRwx,
    }

    impl Writable {
        pub(crate) fn describe(self) -> &'static str {
            match self {
                Self::MemfdAlias => {
                    "a memfd double mapping (read+execute over the text, read+write alias; no W+X mapping)"
                }
                Self::MprotectRwx => "mprotect read+write+execute of the pages",
            }
        }
    }

    /// The process's patchable call instructions, made writable once.
    #[derive(Debug)]
    pub(crate) struct Text {
        /// By site (index [`TEST_SITE`] for the tests' own).
        calls: Vec<Vec<Call>>,
        /// The trampoline slots' target words, through the writable view.
        slot_targets: Vec<&'static AtomicU64>,
        writable: Writable,
        /// Why the memfd double mapping was not used, when it was not.
        memfd_error: Option<String>,
        /// Pages made writable, and the runs of contiguous pages they form.
        pages: usize,
        runs: usize,
    }

    /// The one text of the process, opened on first use.
    static TEXT: OnceLock<Result<Text, Unavailable>> = OnceLock::new();

    impl Text {
        /// The process's text, opened on first use (see the module: open it before spawning threads),
        /// or why this machine cannot patch it.
        pub(crate) fn get() -> Result<&'static Text, Unavailable> {
            TEXT.get_or_init(Self::open).as_ref().map_err(Clone::clone)
        }

        fn open() -> Result<Text, Unavailable> {
            register_membarrier()?;
            let page = page_size();
            let entries: Vec<&Entry> = table().iter().filter(|e| e.site != ANCHOR_SITE).collect();
            // The layout is checked before anything is mapped: a bug here must not leave the text
            // half remapped.
            for e in &entries {
                assert!(
                    e.site <= TEST_SITE,
                    "textpoke: a call instruction for site {} (the most is {TEST_SITE})",
                    e.site
                );
                assert_eq!((e.call + 1) % 4, 0, "textpoke: a call's rel32 is not 4-byte aligned (layout bug)");
            }
            let tramp = (&raw const TRAMPOLINES) as usize;
            let mut pages: Vec<usize> = entries.iter().map(|e| (e.call + 1) & !(page - 1)).collect();
            pages.extend((tramp..tramp + SLOT * (MAX_SITES + 1)).step_by(page).map(|a| a & !(page - 1)));
            pages.sort_unstable();
            pages.dedup();
            let runs = runs_of(&pages, page);
            let (try_memfd, try_mprotect) = match std::env::var(WRITABLE_VAR).as_deref() {
                Err(_) | Ok("") => (true, true),
                Ok("memfd") => (true, false),
                Ok("mprotect") => (false, true),
                Ok(other) => {
                    return Err(Unavailable(format!(
                        "{WRITABLE_VAR}={other:?} is not a way to write text: use memfd or mprotect, or unset it to try both"
                    )));
                }
            };
            let skipped = || format!("not tried ({WRITABLE_VAR})");
            let memfd = if try_memfd { memfd_alias(&runs) } else { Err(skipped()) };
            let (writable, view, memfd_error) = match memfd {
                Ok(view) => (Writable::MemfdAlias, view, None),
                Err(memfd) => match if try_mprotect { mprotect_rwx(&runs) } else { Err(skipped()) } {
                    Ok(view) => (Writable::MprotectRwx, view, Some(memfd)),
                    Err(rwx) => {
                        return Err(Unavailable(format!(
                            "its call instructions cannot be made writable: memfd double mapping: {memfd}; \
                             mprotect read+write+execute: {rwx}{}",
                            policy_hints()
                        )));
                    }
                },
            };
            let mut calls: Vec<Vec<Call>> = (0..=TEST_SITE).map(|_| Vec::new()).collect();
            for e in entries {
                // SAFETY: `view` maps every page listed above, which includes this rel32's page, to
                // a writable address that stays mapped for the life of the process; 4-aligned.
                let rel32 = unsafe { &*(view.translate(e.call + 1) as *const AtomicU32) };
                calls[e.site].push(Call { rel32, next: e.call + 5, slow_path: e.slow_path });
            }
            let slot_targets = (0..=MAX_SITES)
                // SAFETY: as above: the trampoline pages are in `view`; each target word is 8-aligned
                // (16-byte slots on a page-aligned start).
                .map(|s| unsafe { &*(view.translate(tramp + s * SLOT + SLOT_TARGET) as *const AtomicU64) })
                .collect();
            Ok(Text { calls, slot_targets, writable, memfd_error, pages: pages.len(), runs: runs.len() })
        }

        /// Points every call instruction of `site` at `target`. Only stores: the change is certain to
        /// be seen by every core after the next [`sync`](Text::sync). Callers are serialized (the
        /// engine's lock, or a test's own).
        pub(crate) fn point(&self, site: usize, target: Target) {
            for call in &self.calls[site] {
                let dest = match target {
                    Target::SlowPath => call.slow_path,
                    Target::Code(code) => code,
                };
                match rel32(call.next, dest) {
                    Some(rel) => store_rel32(call, rel),
                    None => self.point_through_slot(site, call, dest),
                }
            }
        }

        /// Points `call` at `site`'s trampoline slot, which jumps to `dest`: for a target out of
        /// rel32 range.
        fn point_through_slot(&self, site: usize, call: &Call, dest: usize) {
            // Relaxed: the slot's word is data that the trampoline loads when it runs; a core that
            // runs the trampoline after the next sync sees it (membarrier orders memory too). A
            // call that already goes through the slot takes the new target at once, before the
            // sync: a change of code that skips the slow path, as only immediate funcs make, which
            // every task may see at once anyway.
            self.slot_targets[site].store(dest as u64, Ordering::Relaxed);
            let slot = (&raw const TRAMPOLINES) as usize + site * SLOT;
            let rel = rel32(call.next, slot).expect("the trampolines are in the same text as the calls");
            store_rel32(call, rel);
        }

        /// Makes every store so far visible to every thread of the process: after it returns, no
        /// thread runs a call instruction as it was before them.
        pub(crate) fn sync(&self) {
            // SAFETY: a plain system call; the command was registered in `open`.
            let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) };
            assert_eq!(r, 0, "membarrier(SYNC_CORE) failed after its registration: {}", io::Error::last_os_error());
        }

        /// One line for `harness env`: what was made writable, and how.
        pub(crate) fn describe(&self) -> String {
            let sites = self.calls[..MAX_SITES].iter().filter(|c| !c.is_empty()).count();
            let calls: usize = self.calls.iter().map(Vec::len).sum();
            let mut s = format!(
                "{calls} call instructions for {sites} sites on {} pages in {} runs, made writable by {}; \
                 membarrier SYNC_CORE registered",
                self.pages,
                self.runs,
                self.writable.describe()
            );
            if let Some(e) = &self.memfd_error {
                let _ = write!(s, " (memfd double mapping: {e})");
            }
            let _ = write!(s, "{}", policy_hints());
            s
        }

        /// Test-only: writes `site`'s rel32s one byte at a time, the way that tears (the tear test's
        /// control: a core can fetch a displacement that is half old, half new).
        #[cfg(test)]
        pub(crate) fn point_bytewise_for_test(&self, site: usize, dest: usize) {
            for call in &self.calls[site] {
                let rel = rel32(call.next, dest).expect("near target").to_le_bytes();
                let base = std::ptr::from_ref(call.rel32).cast::<u8>().cast_mut();
                for (i, b) in rel.into_iter().enumerate() {
                    // SAFETY: the four bytes of a writable rel32 (see `open`); volatile so that the
                    // compiler keeps them four separate byte stores.
                    unsafe { base.add(i).write_volatile(b) };
                    // A pause between bytes, as a slower writer would leave: back to back, the
                    // mixed displacements last a nanosecond each and a caller rarely fetches one.
                    for _ in 0..64 {
                        std::hint::spin_loop();
                    }
                }
            }
        }

        /// Test-only: where each call of `site` leads now, read back from its rel32.
        #[cfg(test)]
        pub(crate) fn destinations_for_test(&self, site: usize) -> Vec<usize> {
            // Relaxed: a read of what the writer (this thread, serialized with the test) stored.
            let dest = |c: &Call| c.next.wrapping_add_signed(c.rel32.load(Ordering::Relaxed) as i32 as isize);
            self.calls[site].iter().map(dest).collect()
        }

        /// Test-only: the address of `site`'s trampoline slot.
        #[cfg(test)]
        pub(crate) fn slot_for_test(&self, site: usize) -> usize {
            (&raw const TRAMPOLINES) as usize + site * SLOT
        }

        /// Test-only: points `site`'s calls at `dest` through the trampoline slot even though it is
        /// in range, to exercise the path a far target takes.
        #[cfg(test)]
        pub(crate) fn point_through_slot_for_test(&self, site: usize, dest: usize) {
            for call in &self.calls[site] {
                self.point_through_slot(site, call, dest);
            }
        }
    }

    /// The displacement from `next` to `dest`, if it fits a rel32.
    fn rel32(next: usize, dest: usize) -> Option<u32> {
        let rel = (dest as i64).wrapping_sub(next as i64);
        i32::try_from(rel).ok().map(|r| r as u32)
    }

    fn store_rel32(call: &Call, rel: u32) {
        // One aligned 4-byte store (see the module). Relaxed: instruction fetch is not ordered by
        // memory orderings at all; what orders it is `Text::sync`.
        call.rel32.store(rel, Ordering::Relaxed);
    }

    const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_long = 1 << 5;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_long = 1 << 6;

    /// The first kernel whose SYNC_CORE membarrier serializes the calling thread too (before it,
    /// the writer's own core could run a stale call instruction after the sync).
    const SYNC_CORE_SERIALIZES_CALLER: (u32, u32) = (5, 11);

    /// `major.minor` of a kernel release string such as `6.18.0-rc1`.
    fn kernel_version(release: &str) -> Option<(u32, u32)> {
        let mut parts = release.split(['.', '-']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    fn register_membarrier() -> Result<(), Unavailable> {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        match kernel_version(release.trim()) {
            Some(v) if v >= SYNC_CORE_SERIALIZES_CALLER => {}
            _ => {
                let (major, minor) = SYNC_CORE_SERIALIZES_CALLER;
                return Err(Unavailable(format!(
                    "kernel {:?}: it needs Linux {major}.{minor} or later, whose membarrier SYNC_CORE also \
                     serializes the calling thread",
                    release.trim()
                )));
            }
        }
        // SAFETY: plain system calls with no pointers.
        let offered = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
        if offered < 0 {
            return Err(Unavailable(format!(
                "membarrier is not available ({}); it needs Linux 5.11 or later",
                io::Error::last_os_error()
            )));
        }
        let needed = MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE;
        if offered & needed != needed {
            return Err(Unavailable(format!(
                "this kernel does not offer membarrier PRIVATE_EXPEDITED_SYNC_CORE (commands offered: {offered:#x}); \
                 it needs Linux 5.11 or later on x86-64, the only way to make other threads run new code at once"
            )));
        }
        // SAFETY: as above.
        let r =
            unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) };
        if r != 0 {
            return Err(Unavailable(format!(
                "membarrier REGISTER_PRIVATE_EXPEDITED_SYNC_CORE failed: {}",
                io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(p).ok().filter(|p| p.is_power_of_two()).expect("a page size")
    }

    /// A run of contiguous pages: its start and length in bytes.
    #[derive(Clone, Copy, Debug)]
    struct Run {
        start: usize,
        len: usize,
    }

    /// Sorted, distinct page addresses → runs of contiguous pages.
    fn runs_of(pages: &[usize], page: usize) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for &p in pages {
            match runs.last_mut() {
                Some(r) if r.start + r.len == p => r.len += page,
                _ => runs.push(Run { start: p, len: page }),
            }
        }
        runs
    }

    /// Where each run can be written: the run's own address (mprotect) or an alias.
    struct View {
        /// Each run and the writable address of its first byte.
        runs: Vec<(Run, usize)>,
    }

    impl View {
        fn translate(&self, addr: usize) -> usize {
            let (run, base) =
                self.runs.iter().find(|(r, _)| (r.start..r.start + r.len).contains(&addr)).expect("mapped");
            base + (addr - run.start)
        }
    }

    fn os_error(what: &str) -> String {
        format!("{what}: {}", io::Error::last_os_error())
    }

    /// Copies the runs into one memfd, maps it read+write somewhere, and read+execute over the runs.
    fn memfd_alias(runs: &[Run]) -> Result<View, String> {
        const MFD_EXEC: libc::c_uint = 0x10;
        let total: usize = runs.iter().map(|r| r.len).sum();
        let name = c"dispatch-textpoke";
        // SAFETY: plain system calls on a file descriptor this function owns; `name` is a C string.
        unsafe {
            // MFD_EXEC says outright that the memfd will be executable (Linux 6.3 and later, where
            // `vm.memfd_noexec` may otherwise refuse); older kernels reject the flag, so retry without.
            let mut fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | MFD_EXEC);
            if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC);
            }
            if fd < 0 {
                return Err(os_error("memfd_create"));
            }
            let result = (|| {
                if libc::ftruncate(fd, total as libc::off_t) != 0 {
                    return Err(os_error("ftruncate"));
                }
                let alias = libc::mmap(
                    std::ptr::null_mut(),
                    total,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                if alias == libc::MAP_FAILED {
                    return Err(os_error("mmap of the read+write alias"));
                }
                let mut view = View { runs: Vec::with_capacity(runs.len()) };
                let mut offset = 0;
                for &run in runs {
                    let base = alias as usize + offset;
                    // The text is immutable, so a copy made now is what every thread runs meanwhile.
                    std::ptr::copy_nonoverlapping(run.start as *const u8, base as *mut u8, run.len);
                    view.runs.push((run, base));
                    offset += run.len;
                }
                let mut offset = 0;
                for &run in runs {
                    // MAP_FIXED replaces the text mapping in one step; a thread that runs this code
                    // meanwhile faults, waits for the kernel, and finds the same bytes.
                    let m = libc::mmap(
                        run.start as *mut libc::c_void,
                        run.len,
                        libc::PROT_READ | libc::PROT_EXEC,
                        libc::MAP_SHARED | libc::MAP_FIXED,
                        fd,
                        offset as libc::off_t,
                    );
                    if m == libc::MAP_FAILED {
                        let why = os_error("mmap of the memfd read+execute over the text");
                        // Runs already remapped stay so (the memfd keeps their bytes; the
                        // mprotect fallback then writes them in place); the alias goes.
                        libc::munmap(alias, total);
                        return Err(why);
                    }
                    offset += run.len;
                }
                Ok(view)
            })();
            libc::close(fd);
            result
        }
    }

    /// Makes the runs themselves read+write+execute.
    fn mprotect_rwx(runs: &[Run]) -> Result<View, String> {
        for run in runs {
            // SAFETY: the runs are whole pages of this process's own text, which stays mapped;
            // adding write permission changes no byte.
            let r = unsafe {
                libc::mprotect(
                    run.start as *mut libc::c_void,
                    run.len,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                )
            };
            if r != 0 {
                return Err(os_error("mprotect"));
            }
        }
        Ok(View { runs: runs.iter().map(|&r| (r, r.start)).collect() })
    }

    /// What the OS policies that can refuse writable code say here, for error messages and `env`:
    /// `PR_SET_MDWE` (refuses W+X and gaining X), SELinux (execmem/execmod), `vm.memfd_noexec`.
    fn policy_hints() -> String {
        const PR_GET_MDWE: libc::c_int = 66;
        let mut hints = Vec::new();
        // SAFETY: a prctl query with no pointers.
        let mdwe = unsafe { libc::prctl(PR_GET_MDWE, 0, 0, 0, 0) };
        if mdwe > 0 {
            hints.push("PR_SET_MDWE is on (memfd double mapping only; mprotect is refused)".to_owned());
        }
        if std::fs::read_to_string("/sys/fs/selinux/enforce").is_ok_and(|s| s.trim() == "1") {
            hints.push("SELinux is enforcing (execmem/execmod may refuse writable code)".to_owned());
        }
        if let Ok(v) = std::fs::read_to_string("/proc/sys/vm/memfd_noexec")
            && v.trim() != "0"
        {
            hints.push(format!("vm.memfd_noexec = {} (2 refuses executable memfds)", v.trim()));
        }
        if hints.is_empty() { String::new() } else { format!("; {}", hints.join("; ")) }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn runs_join_contiguous_pages() {
            let r = runs_of(&[0x1000, 0x2000, 0x4000, 0x5000, 0x6000, 0x9000], 0x1000);
            let r: Vec<_> = r.iter().map(|r| (r.start, r.len)).collect();
            assert_eq!(r, [(0x1000, 0x2000), (0x4000, 0x3000), (0x9000, 0x1000)]);
        }

        #[test]
        fn kernel_versions_parse() {
            assert_eq!(kernel_version("6.18.0-rc1"), Some((6, 18)));
            assert_eq!(kernel_version("5.10-foo"), Some((5, 10)));
            assert_eq!(kernel_version("garbage"), None);
            assert!(kernel_version("5.10.0").unwrap() < SYNC_CORE_SERIALIZES_CALLER);
            assert!(kernel_version("5.11.0").unwrap() >= SYNC_CORE_SERIALIZES_CALLER);
        }

        #[test]
        fn rel32_fits_only_within_two_gib() {
            assert_eq!(rel32(0x1000, 0x1010), Some(0x10));
            assert_eq!(rel32(0x1010, 0x1000), Some((-0x10i32) as u32));
            assert_eq!(rel32(0, 0x8000_0000), None);
            assert_eq!(rel32(0x8000_0000, 0), Some(i32::MIN as u32));
        }
    }
}

/// Elsewhere there is no text to patch: no `Text` can exist, and [`Text::get`] says why.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[derive(Debug)]
pub(crate) enum Text {}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
impl Text {
    pub(crate) fn get() -> Result<&'static Text, Unavailable> {
        Err(Unavailable(
            "it patches x86-64 call instructions through Linux system calls (memfd, membarrier); \
             this is another architecture or OS"
                .to_owned(),
        ))
    }

    pub(crate) fn point(&self, _site: usize, _target: Target) {
        match *self {}
    }

    pub(crate) fn sync(&self) {
        match *self {}
    }

    pub(crate) fn describe(&self) -> String {
        match *self {}
    }
}
