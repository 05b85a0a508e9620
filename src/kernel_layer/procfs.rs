// SPDX-License-Identifier: GPL-2.0

//! procfs files: the read-only views (`seq_file`, `single_open`) and the
//! write-only control file.
//!
//! The 6.12 kernel crate has no procfs abstraction, so this file owns every
//! call into procfs. The callbacks are plain `extern "C"` functions built
//! per view type; they find the module's state through the crate root.

use super::bindings;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::{null_mut, NonNull};
use kernel::alloc::{flags, KVec};
use kernel::error::code;
use kernel::ffi::{c_char, c_int, c_void};
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::uaccess::UserSlice;

/// A read-only procfs view: `show` writes the whole file.
pub trait ProcShow {
    /// Writes the file's contents.
    fn show(out: &mut SeqWriter<'_>) -> fmt::Result;
}

/// A write-only procfs file: `write` receives each write's bytes.
pub trait ProcWrite {
    /// Longest write accepted, in bytes.
    const MAX_WRITE: usize;
    /// Handles one write of `input`; an error becomes the write's result.
    fn write(input: &[u8]) -> Result;
}

/// Text output into a `seq_file`.
pub struct SeqWriter<'a> {
    seq: NonNull<bindings::seq_file>,
    _file: PhantomData<&'a mut bindings::seq_file>,
}

impl fmt::Write for SeqWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: `seq` is the `seq_file` of the `show` call this writer was
        // made for, valid for its duration; `s` is valid for `s.len()` bytes.
        // On overflow `seq_write` fails and the seq_file code calls `show`
        // again with a larger buffer, so the result needs no handling.
        unsafe { bindings::seq_write(self.seq.as_ptr(), s.as_ptr().cast(), s.len()) };
        Ok(())
    }
}

/// The `show` callback handed to `single_open` for view `T`.
///
/// # Safety
///
/// Only the seq_file code may call it, with the `seq_file` being shown.
unsafe extern "C" fn show_callback<T: ProcShow>(
    seq: *mut bindings::seq_file,
    _v: *mut c_void,
) -> c_int {
    let Some(seq) = NonNull::new(seq) else {
        return code::EINVAL.to_errno();
    };
    let mut out = SeqWriter {
        seq,
        _file: PhantomData,
    };
    match T::show(&mut out) {
        Ok(()) => 0,
        Err(_) => code::EIO.to_errno(),
    }
}

/// The `proc_open` callback of view `T`.
///
/// # Safety
///
/// Only procfs may call it, with the file being opened.
unsafe extern "C" fn open_callback<T: ProcShow>(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: `file` is the file being opened, as procfs passes it;
    // `show_callback::<T>` has the signature `single_open` expects.
    unsafe { bindings::single_open(file, Some(show_callback::<T>), null_mut()) }
}

/// The `proc_write` callback of control file `T`.
///
/// # Safety
///
/// Only procfs may call it, with `buf` a user-space pointer valid for
/// `count` bytes (checked by the user-copy functions, not assumed).
unsafe extern "C" fn write_callback<T: ProcWrite>(
    _file: *mut bindings::file,
    buf: *const c_char,
    count: usize,
    _pos: *mut bindings::loff_t,
) -> isize {
    if count > T::MAX_WRITE {
        return code::EINVAL.to_errno() as isize;
    }
    let mut input = KVec::new();
    let user = UserSlice::new(buf as usize, count);
    if let Err(e) = user.read_all(&mut input, flags::GFP_KERNEL) {
        return e.to_errno() as isize;
    }
    match T::write(&input) {
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}

struct ViewOps<T>(PhantomData<T>);

impl<T: ProcShow> ViewOps<T> {
    const OPS: bindings::proc_ops = bindings::proc_ops {
        proc_open: Some(open_callback::<T>),
        proc_read: Some(bindings::seq_read),
        proc_lseek: Some(bindings::seq_lseek),
        proc_release: Some(bindings::single_release),
        // SAFETY: `proc_ops` is a plain C struct of flags and optional
        // function pointers, for which all zeroes means "not provided".
        ..unsafe { core::mem::zeroed() }
    };
}

struct ControlOps<T>(PhantomData<T>);

impl<T: ProcWrite> ControlOps<T> {
    const OPS: bindings::proc_ops = bindings::proc_ops {
        proc_write: Some(write_callback::<T>),
        proc_lseek: Some(bindings::noop_llseek),
        // SAFETY: As above: all zeroes means "not provided".
        ..unsafe { core::mem::zeroed() }
    };
}

/// A file in /proc, removed when dropped.
///
/// # Invariants
///
/// `entry` is a live procfs entry created by `proc_create`.
pub struct ProcEntry {
    entry: NonNull<bindings::proc_dir_entry>,
}

// SAFETY: The entry is only removed (in `drop`), which may happen on any thread.
unsafe impl Send for ProcEntry {}
// SAFETY: `ProcEntry` has no methods taking `&self`.
unsafe impl Sync for ProcEntry {}

impl ProcEntry {
    fn create(name: &'static CStr, mode: u16, ops: &'static bindings::proc_ops) -> Result<Self> {
        // SAFETY: `name` is a NUL-terminated string and `ops` lives forever,
        // as procfs requires; a null parent means /proc itself.
        let entry = unsafe { bindings::proc_create(name.as_char_ptr(), mode, null_mut(), ops) };
        // INVARIANT: a non-null result is a live entry.
        NonNull::new(entry)
            .map(|entry| ProcEntry { entry })
            .ok_or(code::ENOMEM)
    }

    /// Creates a read-only view `/proc/<name>` with permission bits `mode`.
    pub fn view<T: ProcShow>(name: &'static CStr, mode: u16) -> Result<Self> {
        Self::create(name, mode, &ViewOps::<T>::OPS)
    }

    /// Creates a write-only control file `/proc/<name>` with permission bits `mode`.
    pub fn control<T: ProcWrite>(name: &'static CStr, mode: u16) -> Result<Self> {
        Self::create(name, mode, &ControlOps::<T>::OPS)
    }
}

impl Drop for ProcEntry {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `entry` is live; `proc_remove` waits
        // for callbacks in progress, so none runs after this returns.
        unsafe { bindings::proc_remove(self.entry.as_ptr()) };
    }
}
