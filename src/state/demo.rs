// SPDX-License-Identifier: GPL-2.0

//! The slab experiment of `demo=1`: a cache of student records whose
//! constructor logs that it runs, two students allocated and freed.

use super::errors::{CtlError, CtlErrorKind, NameBuf, Subject, Verb};
use super::Rmm;
use crate::control::CreateOptions;
use crate::gfp::Gfp;
use crate::platform::Platform;
use crate::slab::CtorCall;
use core::mem::size_of;
use core::ptr::NonNull;

/// Name of the demo's cache.
pub const DEMO_CACHE: &str = "rmm_student";

/// The demo's record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Student {
    /// Student number; 0 in constructed state.
    pub id: u32,
    /// Name, NUL-padded; all NUL in constructed state.
    pub name: [u8; 16],
}

impl Student {
    /// The constructed state.
    pub const EMPTY: Student = Student {
        id: 0,
        name: [0; 16],
    };

    /// The name up to its first NUL.
    pub fn name(&self) -> &str {
        let len = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        core::str::from_utf8(&self.name[..len]).unwrap_or("?")
    }
}

/// The demo constructor logs its first calls, then only calls whose number
/// is a power of two.
pub const DEMO_CTOR_LOG_FIRST: usize = 4;

/// Whether the demo constructor logs its call number `call` (from 1).
pub const fn demo_ctor_logs(call: usize) -> bool {
    call <= DEMO_CTOR_LOG_FIRST || call.is_power_of_two()
}

/// The demo's constructor: puts a [`Student`] in constructed state and logs
/// that it runs, rate-limited by [`demo_ctor_logs`] on the cache's call
/// number (every slab built later, through the control file too, logs the
/// same way).
///
/// # Safety
///
/// As for every [`crate::slab::Ctor`], on the `rmm_student` cache:
/// `size_of::<Student>()` bytes aligned for `Student`.
unsafe fn student_ctor(obj: NonNull<u8>, call: &CtorCall<'_>) {
    // SAFETY: per the caller's guarantee.
    unsafe { obj.cast::<Student>().as_ptr().write(Student::EMPTY) };
    if demo_ctor_logs(call.number) {
        (call.log)(format_args!(
            "demo: student constructor running (call {})",
            call.number
        ));
    }
}

impl<P: Platform> Rmm<P> {
    /// The demo of `demo=1`: creates the cache `rmm_student` of [`Student`]
    /// records with a constructor that logs (rate-limited) that it runs,
    /// allocates two students, fills and logs them, and frees them. The
    /// cache stays (it shows in slabinfo) until unload. Lines go to
    /// [`Platform::info`]; an error is also reported like a control
    /// command's.
    pub fn run_demo(&mut self) -> Result<(), CtlError> {
        let result = self.demo();
        if let Err(error) = &result {
            self.report(error);
        }
        result
    }

    fn demo(&mut self) -> Result<(), CtlError> {
        let subject = Subject::Cache(NameBuf::new(DEMO_CACHE));
        let options = CreateOptions {
            align: core::mem::align_of::<Student>(),
            ..CreateOptions::default()
        };
        self.create_cache(
            DEMO_CACHE,
            size_of::<Student>(),
            options,
            Some(student_ctor),
        )
        .map_err(|kind| CtlError::new(Some(Verb::Create), subject, kind))?;
        let entry = self.cache(DEMO_CACHE).ok_or(CtlError::new(
            Some(Verb::Create),
            subject,
            CtlErrorKind::UnknownCache,
        ))?;
        let cache = entry.cache;
        let pages = &self.pages;
        let platform = pages.platform();
        let info = cache.slabinfo();
        platform.info(format_args!(
            "demo: created cache {DEMO_CACHE}: {} byte students in {} byte slots, {} per slab",
            cache.object_size(),
            info.objsize,
            info.objperslab
        ));
        let first = cache.alloc(pages, Gfp::KERNEL);
        let second = cache.alloc(pages, Gfp::KERNEL);
        let (first, second) = match (first, second) {
            (Ok(first), Ok(second)) => (first, second),
            (first, second) => {
                let mut done = 0;
                for student in [first, second].into_iter().flatten() {
                    done += 1;
                    // SAFETY: just allocated from this cache, still in
                    // constructed state, used by nothing else.
                    let _ = unsafe { cache.free(pages, student) };
                }
                return Err(CtlError::new(
                    Some(Verb::Alloc),
                    subject,
                    CtlErrorKind::OutOfMemory { done, requested: 2 },
                ));
            }
        };
        for (number, (obj, name)) in [(first, "alice"), (second, "bob")].into_iter().enumerate() {
            let student = obj.cast::<Student>().as_ptr();
            let mut record = Student::EMPTY;
            record.id = number as u32 + 1;
            record.name[..name.len()].copy_from_slice(name.as_bytes());
            // SAFETY: the object is ours, `size_of::<Student>()` bytes
            // aligned for `Student` (the cache's alignment).
            unsafe { student.write(record) };
            // SAFETY: as above, just written.
            let record = unsafe { &*student };
            platform.info(format_args!(
                "student {}: id={} name={}",
                number + 1,
                record.id,
                record.name()
            ));
        }
        for obj in [first, second] {
            // Objects go back in constructed state, as the cache expects.
            // SAFETY: as above.
            unsafe { obj.cast::<Student>().as_ptr().write(Student::EMPTY) };
            // SAFETY: allocated above from this cache, not used afterwards.
            let _ = unsafe { cache.free(pages, obj) };
        }
        platform.info(format_args!(
            "demo: {} objects in the first slab, each constructed once ({} calls)",
            info.objperslab,
            cache.stats().ctor_calls
        ));
        platform.info(format_args!(
            "demo: freed both students; {DEMO_CACHE} stays until unload"
        ));
        Ok(())
    }
}
