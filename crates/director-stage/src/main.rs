//! director-stage: what a node without director's executor runs to install it.
//!
//! The probe (`probe_command` in director's transport) writes this stage from its stdin to a
//! temp file and starts it as `director-stage TEMP PATH`; the stage reads the executor from
//! the same stdin, LZ4-compressed (a third smaller than the binary on the wire, and decoded
//! in this process: no decompressor is needed on the node, and none is started), checks it,
//! writes it to TEMP, renames TEMP to PATH and becomes the executor (`PATH serve`), in the same
//! process and session. What it renames is verified: the upload starts with the binary's
//! length and its XXH3-64, and a stream that decodes to anything else (a byte changed, a
//! stream cut short) is refused; every write is checked (a full disk). A refused upload
//! leaves nothing behind: the stage removes its own file when it starts, and TEMP on failure.
//!
//! It is `no_std` and links only libc's system calls, to stay a few kilobytes: it is the one
//! thing sent uncompressed.

#![no_std]
#![no_main]

use core::ffi::{c_char, c_int, c_void};

// libc's system calls (the libc crate declares them; without std nothing links the library).
#[link(name = "c")]
extern "C" {}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// The upload's first bytes: the compressed length, the binary's length (both u32, little
/// endian) and the binary's XXH3-64 (u64, little endian).
const PREFIX: usize = 16;
/// No executor is near this size; a larger length is a stream that is not an upload.
const LIMIT: usize = 64 << 20;

/// # Safety
///
/// Called by libc's start code, with `argc` C strings in `argv` and the environment in `envp`,
/// each array ending with a null.
#[no_mangle]
pub unsafe extern "C" fn main(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    if argc != 3 {
        say(b"usage: director-stage TEMP PATH\n");
        return 2;
    }
    // SAFETY: argv holds argc valid C strings, and a null after them.
    let (me, temp, path) = unsafe { (*argv, *argv.add(1), *argv.add(2)) };
    // SAFETY: `me` is a valid C string. The stage's file is a temp file: gone however it ends.
    unsafe { libc::unlink(me) };
    match install(temp, path) {
        Ok(()) => {
            let serve = c"serve".as_ptr();
            let args = [path, serve, core::ptr::null()];
            // SAFETY: path and serve are C strings, args and envp are null-terminated.
            unsafe { libc::execve(path, args.as_ptr(), envp) };
            say(b"the installed executor cannot be started\n");
            1
        }
        Err(message) => {
            // SAFETY: `temp` is a valid C string.
            unsafe { libc::unlink(temp) };
            say(message.as_bytes());
            1
        }
    }
}

fn install(temp: *const c_char, path: *const c_char) -> Result<(), &'static str> {
    let mut prefix = [0u8; PREFIX];
    read_exactly(&mut prefix)?;
    let word = |at: usize| u32::from_le_bytes([prefix[at], prefix[at + 1], prefix[at + 2], prefix[at + 3]]) as usize;
    let (packed_len, len) = (word(0), word(4));
    let sum = u64::from_le_bytes([
        prefix[8], prefix[9], prefix[10], prefix[11], prefix[12], prefix[13], prefix[14], prefix[15],
    ]);
    if packed_len > LIMIT || len > LIMIT || len == 0 {
        return Err("the upload is not an executor\n");
    }
    let packed = mapped(packed_len)?;
    let binary = mapped(len)?;
    read_exactly(packed)?;
    match lz4_flex::block::decompress_into(packed, binary) {
        Ok(n) if n == len && xxhash_rust::xxh3::xxh3_64(binary) == sum => {}
        _ => return Err("the uploaded executor does not verify\n"),
    }
    make_parents(path)?;
    // SAFETY: `temp` is a valid C string; the file is created for this user alone.
    let fd = unsafe {
        libc::open(temp, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0o700)
    };
    if fd < 0 {
        return Err("the executor cannot be written\n");
    }
    let mut left = &binary[..];
    while !left.is_empty() {
        // SAFETY: fd is open, `left` is valid for its length.
        let n = unsafe { libc::write(fd, left.as_ptr().cast::<c_void>(), left.len()) };
        if n < 0 && errno_is_eintr() {
            continue;
        }
        if n <= 0 {
            // SAFETY: fd is open.
            unsafe { libc::close(fd) };
            return Err("the executor cannot be written (is the disk full?)\n");
        }
        left = &left[n as usize..];
    }
    // SAFETY: fd is open; temp and path are valid C strings.
    if unsafe { libc::close(fd) } != 0 || unsafe { libc::rename(temp, path) } != 0 {
        return Err("the uploaded executor cannot be put in place\n");
    }
    Ok(())
}

/// Makes the directories above `path` that are missing, for this user alone, as `mkdir -p`
/// would (the probe starts no `mkdir`: on a first contact the executors' directory is made
/// here, after the upload verified, so a refused one leaves no directory behind either).
fn make_parents(path: *const c_char) -> Result<(), &'static str> {
    const FAILED: &str = "the executor's directory cannot be made\n";
    let mut dir = [0u8; 4096];
    // SAFETY: `path` is a valid C string.
    let len = unsafe { libc::strlen(path) };
    if len >= dir.len() {
        return Err(FAILED);
    }
    // SAFETY: every `i` is below `len`, within `path`.
    let Some(end) = (0..len).rev().find(|&i| unsafe { *path.add(i) } == b'/' as c_char) else {
        return Ok(());
    };
    // SAFETY: `end` < len, within `path`; `dir` keeps a NUL after the copy.
    unsafe { core::ptr::copy_nonoverlapping(path.cast::<u8>(), dir.as_mut_ptr(), end) };
    let made = |at: usize, dir: &mut [u8; 4096]| {
        let kept = dir[at];
        dir[at] = 0;
        // SAFETY: `dir` is NUL-terminated at `at`.
        let ok = unsafe { libc::mkdir(dir.as_ptr().cast::<c_char>(), 0o700) } == 0
            || unsafe { *libc::__errno_location() } == libc::EEXIST;
        dir[at] = kept;
        ok
    };
    // Usually one call: the directory is there already, or only it is missing.
    if end == 0 || made(end, &mut dir) {
        return Ok(());
    }
    // Otherwise each level from the top, as `mkdir -p` does.
    for at in 1..=end {
        if (at == end || dir[at] == b'/') && !made(at, &mut dir) {
            return Err(FAILED);
        }
    }
    Ok(())
}

/// Fills `into` from stdin; the upload is cut short when stdin ends first. Reads no further:
/// what follows on stdin is the executor's.
fn read_exactly(into: &mut [u8]) -> Result<(), &'static str> {
    let mut at = 0;
    while at < into.len() {
        // SAFETY: the range is within `into`.
        let n = unsafe { libc::read(0, into[at..].as_mut_ptr().cast::<c_void>(), into.len() - at) };
        match n {
            n if n > 0 => at += n as usize,
            n if n < 0 && errno_is_eintr() => {}
            _ => return Err("the upload was cut short\n"),
        }
    }
    Ok(())
}

fn errno_is_eintr() -> bool {
    // SAFETY: errno is this thread's.
    unsafe { *libc::__errno_location() == libc::EINTR }
}

/// Anonymous memory of `len` bytes for the process's short life: never unmapped (the process
/// becomes the executor or exits), so it is `'static`.
fn mapped(len: usize) -> Result<&'static mut [u8], &'static str> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a fresh private anonymous mapping.
    let at =
        unsafe { libc::mmap(core::ptr::null_mut(), len.max(1), prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    if at == libc::MAP_FAILED {
        return Err("no memory for the upload\n");
    }
    // SAFETY: the mapping is `len` bytes (at least), zeroed, and reached only through this slice.
    Ok(unsafe { core::slice::from_raw_parts_mut(at.cast::<u8>(), len) })
}

/// Writes `message` to stderr, where the probe's errors go.
fn say(message: &[u8]) {
    // SAFETY: message is valid for its length.
    unsafe { libc::write(2, message.as_ptr().cast::<c_void>(), message.len()) };
}
