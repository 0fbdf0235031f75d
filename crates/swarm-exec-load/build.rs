// No C runtime and no libc: the loader has its own `_start` and speaks to the kernel alone,
// so it runs in any image (none of the image's libc or dynamic loader is used). Not
// position-independent: with no startup code, nothing would apply a PIE's relocations.
fn main() {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
