//! Ways to end the process, for the worker-process tests.

/// Write to address 8: unmapped in every process, so the kernel delivers
/// `SIGSEGV` (in a WASM guest, a write into its own linear memory).
#[allow(unsafe_code)]
pub(crate) fn segfault() -> ! {
    // SAFETY: none — this is undefined behaviour on purpose: the test
    // plugin's `segfault` operation exists to crash its process. The dangling
    // pointer (address 8, `u64`'s alignment) is non-null and aligned (std's debug checks pass) and never mapped on
    // Linux (the first pages are reserved), so the store faults.
    unsafe { std::ptr::write_volatile(std::ptr::dangling_mut::<u64>(), 1) };
    std::process::abort()
}

/// Recurse with a frame the optimiser cannot remove until the stack overflows.
#[allow(unconditional_recursion)]
pub(crate) fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[7]
}

/// Panics in a destructor while a panic unwinds: Rust aborts the process.
pub(crate) fn panic_while_unwinding() -> ! {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("the second panic, while unwinding");
        }
    }
    let _bomb = Bomb;
    panic!("the first panic")
}
