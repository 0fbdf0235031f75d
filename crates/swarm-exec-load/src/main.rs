//! The loader: the entrypoint of a zero-install helper. Swarm configs are at most 1000 KiB,
//! the node-side program is larger, so it travels as numbered parts; this joins them into
//! an anonymous memory file and executes that. No writable file system, no libc, no shell:
//! it speaks to the kernel alone, so it runs in whatever image the target task runs.
//!
//! `load PARTS:BYTES:SHA256 ARGS…` reads `<dir>/1` … `<dir>/PARTS`, where `<dir>` is the
//! directory of `load` itself, checks that they add up to exactly BYTES and hash to SHA256
//! (64 hex digits: the client's build of the program), and only then executes the result as
//! `swarm-exec-node ARGS…` with an empty environment: nothing of the image's (`DOCKER_HOST`,
//! proxies, `LD_PRELOAD`) reaches it. The parts are swarm configs that anyone allowed to
//! create configs could have made under the build's names; the digest is what makes them
//! the client's. On any failure it says which step failed on stderr and exits 125, what the
//! manager reads as "the helper failed".

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

mod sha256;
use sha256::Sha256;

const SYS_READ: usize = 0;
const SYS_WRITE: usize = 1;
const SYS_OPEN: usize = 2;
const SYS_CLOSE: usize = 3;
const SYS_LSEEK: usize = 8;
const SYS_EXIT: usize = 60;
const SYS_MEMFD_CREATE: usize = 319;
const SYS_EXECVEAT: usize = 322;

const O_RDONLY_CLOEXEC: usize = 0o2000000;
const MFD_CLOEXEC: usize = 1;
/// Linux 6.3+: say the memory file is to be executed (`vm.memfd_noexec` may otherwise
/// seal it against that); older kernels refuse the flag with EINVAL.
const MFD_EXEC: usize = 0x10;
const EINVAL: isize = -22;
const AT_EMPTY_PATH: usize = 0x1000;
const SEEK_CUR: usize = 1;
const EINTR: isize = -4;

/// The helper's "I failed" code (`swarm_exec_node::HELPER_FAILED`).
const FAILED: usize = 125;
/// The program's name: of its memory file, and its argv[0].
const NAME: &core::ffi::CStr = c"swarm-exec-node";
/// Longest part path: the loader's directory and a decimal part number.
const PATH_MAX: usize = 256;

// The kernel starts a static program with argc, argv… , NULL, envp… , NULL on the stack.
global_asm!(
    ".globl _start",
    "_start:",
    "xor rbp, rbp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {start}",
    "ud2",
    start = sym start,
);

unsafe fn syscall(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let ret: isize;
    asm!(
        "syscall",
        inlateout("rax") n as isize => ret,
        in("rdi") a,
        in("rsi") b,
        in("rdx") c,
        in("r10") d,
        in("r8") e,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    ret
}

fn write_all(fd: usize, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        let n = unsafe { syscall(SYS_WRITE, fd, bytes.as_ptr() as usize, bytes.len(), 0, 0) };
        if n == EINTR {
            continue;
        }
        if n <= 0 {
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

fn fail(step: &str, detail: &[u8]) -> ! {
    fail_errno(step, detail, 0)
}

/// As [`fail`], with the kernel's error number (a syscall's negative return) when non-zero.
fn fail_errno(step: &str, detail: &[u8], ret: isize) -> ! {
    let _ = write_all(2, b"swarm-exec load: ");
    let _ = write_all(2, step.as_bytes());
    let _ = write_all(2, detail);
    if ret < 0 {
        let mut digits = [0u8; 20];
        let i = decimal(&mut digits, ret.unsigned_abs() as u64);
        let _ = write_all(2, b" (errno ");
        let _ = write_all(2, &digits[i..]);
        let _ = write_all(2, b")");
    }
    let _ = write_all(2, b"\n");
    unsafe {
        syscall(SYS_EXIT, FAILED, 0, 0, 0, 0);
        // exit does not return.
        core::hint::unreachable_unchecked()
    }
}

unsafe fn c_str<'a>(p: *const u8) -> &'a [u8] {
    let mut n = 0;
    // Volatile, or the loop becomes a call to `strlen`, which nothing here provides.
    while core::ptr::read_volatile(p.add(n)) != 0 {
        n += 1;
    }
    core::slice::from_raw_parts(p, n)
}

fn parse_decimal(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 12 {
        return None;
    }
    s.iter().try_fold(0usize, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + usize::from(b - b'0'))
    })
}

/// Writes `v` in decimal at the end of `digits`; returns where it starts.
fn decimal(digits: &mut [u8; 20], mut v: u64) -> usize {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return i;
        }
    }
}

/// Appends `<dir>/<n>\0` to an empty buffer; returns its length without the NUL.
fn part_path(buf: &mut [u8; PATH_MAX], dir: &[u8], n: usize) -> Option<usize> {
    let mut digits = [0u8; 20];
    let i = decimal(&mut digits, n as u64);
    let len = dir.len() + digits.len() - i;
    if len + 1 > PATH_MAX {
        return None;
    }
    buf[..dir.len()].copy_from_slice(dir);
    buf[dir.len()..len].copy_from_slice(&digits[i..]);
    buf[len] = 0;
    Some(len)
}

/// The 32 bytes that 64 hex digits (either case) spell.
fn parse_hex32(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Copies all of file `from` to `to`, hashing what it copies.
fn copy(from: usize, to: usize, path: &[u8], hash: &mut Sha256) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = unsafe { syscall(SYS_READ, from, buf.as_mut_ptr() as usize, buf.len(), 0, 0) };
        match n {
            0 => return,
            EINTR => continue,
            n if n < 0 => fail_errno("reading ", path, n),
            n => {
                hash.update(&buf[..n as usize]);
                if !write_all(to, &buf[..n as usize]) {
                    fail("writing the program from ", path);
                }
            }
        }
    }
}

unsafe extern "C" fn start(sp: *const usize) -> ! {
    let argc = *sp;
    let argv = sp.add(1) as *mut *const u8;
    let envp_empty: [*const u8; 1] = [core::ptr::null()];
    if argc < 2 {
        fail("usage: load PARTS:BYTES:SHA256 ARGS…", b"");
    }
    let me = c_str(*argv);
    let dir = match me.iter().rposition(|&b| b == b'/') {
        Some(slash) => &me[..=slash],
        None => fail("run by a path without a directory: ", me),
    };
    let spec = c_str(*argv.add(1));
    let mut fields = spec.split(|&b| b == b':');
    let (parts, bytes, digest) = (
        fields.next().and_then(parse_decimal),
        fields.next().and_then(parse_decimal),
        fields.next().and_then(parse_hex32),
    );
    let (Some(parts), Some(bytes), Some(digest), None) = (parts, bytes, digest, fields.next())
    else {
        fail("not PARTS:BYTES:SHA256: ", spec);
    };

    let create = |flags| syscall(SYS_MEMFD_CREATE, NAME.as_ptr() as usize, flags, 0, 0, 0);
    let mut memfd = create(MFD_CLOEXEC | MFD_EXEC);
    if memfd == EINVAL {
        memfd = create(MFD_CLOEXEC);
    }
    if memfd < 0 {
        fail_errno("memfd_create", b"", memfd);
    }
    let memfd = memfd as usize;
    let mut path = [0u8; PATH_MAX];
    let mut hash = Sha256::new();
    for n in 1..=parts {
        let Some(len) = part_path(&mut path, dir, n) else {
            fail("part path too long under ", dir);
        };
        let fd = syscall(SYS_OPEN, path.as_ptr() as usize, O_RDONLY_CLOEXEC, 0, 0, 0);
        if fd < 0 {
            fail_errno("opening ", &path[..len], fd);
        }
        copy(fd as usize, memfd, &path[..len], &mut hash);
        syscall(SYS_CLOSE, fd as usize, 0, 0, 0, 0);
    }
    let written = syscall(SYS_LSEEK, memfd, 0, SEEK_CUR, 0, 0);
    if written < 0 || written as usize != bytes {
        fail("the parts do not add up to the expected size: ", spec);
    }
    // Every byte compared, without an early exit that the compiler could turn into a call
    // to `bcmp`, which nothing here provides.
    let got = hash.finish();
    let differ = got
        .iter()
        .zip(digest.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if differ != 0 {
        fail(
            "the parts are not the program this client asked for (SHA-256 differs); \
             not executed: ",
            spec,
        );
    }
    // The program sees `swarm-exec-node ARGS…`: argv[1] becomes its argv[0].
    *argv.add(1) = NAME.as_ptr().cast();
    let ret = syscall(
        SYS_EXECVEAT,
        memfd,
        c"".as_ptr() as usize,
        argv.add(1) as usize,
        envp_empty.as_ptr() as usize,
        AT_EMPTY_PATH,
    );
    fail_errno("executing the joined program", b"", ret);
}

// Without libc nothing provides these; the compiler emits calls to them for array copies
// and zeroing. `rep` string instructions, so they cannot be turned back into calls.
#[no_mangle]
unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _, options(nostack, preserves_flags));
    dest
}

#[no_mangle]
unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") c as u8, options(nostack, preserves_flags));
    dest
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    fail("internal error", b"");
}
