//! Compiles the kernel's handler logic written in C (`c/kernel_handler.c`, wrapped by
//! `src/kernel_c.rs`) with the system C compiler at -O2, as a kernel build compiles it, whatever
//! the cargo profile: the C loops are measured beside the Rust ones (the harness's fidelity
//! check, the gungraun gate), so they must be optimized in the tests' debug builds too.
fn main() {
    println!("cargo:rerun-if-changed=c/kernel_handler.c");
    cc::Build::new()
        .file("c/kernel_handler.c")
        .opt_level(2)
        // The Rust side aligns every loop to 64 bytes (.cargo/config.toml), without which the
        // measured loops' placement moved their ratios by up to 70% between builds; the C
        // loops get the same alignment so that layout weighs on both sides alike.
        .flag_if_supported("-falign-loops=64")
        .warnings(true)
        .extra_warnings(true)
        .compile("kernel_handler");
}
