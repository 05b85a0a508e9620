// SPDX-License-Identifier: GPL-2.0

//! Module parameters (`insmod rmm.ko demo=0 debug=1`).
//!
//! The `module!` macro of 6.12 has no parameters, so this does what the C
//! `module_param()` macro does: a `struct kernel_param` (the layout comes from
//! the generated bindings) in the module's `__param` section, pointing at
//! the variable and at the kernel's own parser for its type, plus the
//! `parmtype=` and `parm=` strings `modinfo` shows.

use super::bindings;
use core::ptr::null_mut;
use kernel::str::CStr;

/// A `kernel_param` the kernel reads from the `__param` section at load.
#[repr(transparent)]
pub struct KernelParam(pub bindings::kernel_param);

// SAFETY: The kernel only reads the descriptor, and does so while loading
// the module, before any Rust code of it runs; Rust never touches it.
unsafe impl Sync for KernelParam {}

/// Declares a module parameter backed by a `static mut` of a type the kernel
/// has `param_ops_<type>` for (`bool`, `uint`, `charp`), readable by everyone in
/// `/sys/module/rmm/parameters/` (mode 0444: it is only read at load).
///
/// `mod_` is left null: the kernel then serialises access with its global
/// parameter lock instead of the module's, which changes nothing for
/// parameters that are only set at load.
#[macro_export]
macro_rules! module_param {
    ($var:ident, $name:literal, $ty:ty, $ops:ident, $typename:literal, $default:expr, $desc:literal) => {
        #[doc = $desc]
        pub static mut $var: $ty = $default;

        const _: () = {
            #[link_section = "__param"]
            #[used]
            static PARAM: $crate::kernel_layer::params::KernelParam =
                $crate::kernel_layer::params::KernelParam(
                    $crate::kernel_layer::bindings::kernel_param {
                        name: ::core::concat!($name, "\0").as_ptr().cast(),
                        mod_: ::core::ptr::null_mut(),
                        ops: ::core::ptr::addr_of!($crate::kernel_layer::bindings::$ops),
                        perm: 0o444,
                        level: -1,
                        flags: 0,
                        __bindgen_anon_1:
                            $crate::kernel_layer::bindings::kernel_param__bindgen_ty_1 {
                                arg: ::core::ptr::addr_of_mut!($var).cast(),
                            },
                    },
                );

            #[link_section = ".modinfo"]
            #[used]
            static PARMTYPE: [u8; ::core::concat!("parmtype=", $name, ":", $typename, "\0").len()] =
                $crate::kernel_layer::params::to_array(::core::concat!(
                    "parmtype=",
                    $name,
                    ":",
                    $typename,
                    "\0"
                ));

            #[link_section = ".modinfo"]
            #[used]
            static PARM: [u8; ::core::concat!("parm=", $name, ":", $desc, "\0").len()] =
                $crate::kernel_layer::params::to_array(::core::concat!(
                    "parm=", $name, ":", $desc, "\0"
                ));
        };
    };
}

/// Copies a string into a byte array of exactly its length (for `.modinfo`).
pub const fn to_array<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Reads a parameter's value once, at load.
///
/// # Safety
///
/// `var` must point to a parameter variable that nothing writes concurrently
/// (true during `init`: the kernel wrote it before calling it, and its 0444
/// mode means sysfs never writes it).
pub unsafe fn read<T: Copy>(var: *const T) -> T {
    // SAFETY: The caller guarantees that `var` is valid and not written
    // concurrently.
    unsafe { var.read_volatile() }
}

// The module's parameters. Each is a `static mut` the kernel writes while
// loading the module, before `init`; their 0444 mode keeps sysfs from ever
// writing them afterwards.

crate::module_param!(
    DEMO,
    "demo",
    bool,
    param_ops_bool,
    "bool",
    true,
    "Run the slab experiment (cache rmm_student) at load (default: 1)"
);
crate::module_param!(
    BENCH,
    "bench",
    *mut kernel::ffi::c_char,
    param_ops_charp,
    "charp",
    null_mut(),
    "Benchmarks against the kernel's allocators to run at load: all, or cases pair,batch,kmalloc,pages,vmalloc,counter,ctor,parts,smp, and iters=N, reps=N (default: none)"
);
crate::module_param!(
    FAIL,
    "fail",
    u32,
    param_ops_uint,
    "uint",
    0,
    "Fail every N-th page request (new slabs, chunks, page-order blocks), as the control file's fail N; 0 never (default: 0)"
);
crate::module_param!(
    IRQTEST,
    "irqtest",
    u32,
    param_ops_uint,
    "uint",
    0,
    "Rounds of GFP_ATOMIC allocations and frees to run in interrupt context on every CPU at load (default: 0)"
);
crate::module_param!(
    STRESS,
    "stress",
    u32,
    param_ops_uint,
    "uint",
    0,
    "Random allocations and frees (about N in all), objects handed between CPUs, to run on every CPU at load (default: 0)"
);
crate::module_param!(
    DEBUG,
    "debug",
    bool,
    param_ops_bool,
    "bool",
    false,
    "Red zones, poisoning and free checks for every cache (default: 0)"
);

crate::module_param!(
    RESERVE,
    "reserve",
    *mut kernel::ffi::c_char,
    param_ops_charp,
    "charp",
    null_mut(),
    "Emergency reserve of the page allocator, below its min watermark, for GFP_ATOMIC: auto (its share of the kernel's min_free_kbytes) or KiB, 0 for none (default: auto)"
);
crate::module_param!(
    REAP_MS,
    "reap_ms",
    u32,
    param_ops_uint,
    "uint",
    2000,
    "Milliseconds between reaps, which give back empty slabs kept for a recent peak of use; 0 never (default: 2000)"
);

/// The module parameters, as set at load.
pub struct Params {
    /// Run the slab experiment at load.
    pub demo: bool,
    /// Red zones, poisoning and free checks for every cache.
    pub debug: bool,
    /// Fail every N-th page request (0: never).
    pub fail: u32,
    /// Rounds of the interrupt-context self-test.
    pub irqtest: u32,
    /// Operations of the stress test.
    pub stress: u32,
    /// Milliseconds between reaps (0: no reaper).
    pub reap_ms: u32,
    /// The benchmarks to run, if any.
    pub bench: Option<&'static CStr>,
    /// The page allocator's emergency reserve, if given.
    pub reserve: Option<&'static CStr>,
}

impl Params {
    /// Reads the parameters.
    pub fn read() -> Self {
        use core::ptr::addr_of;
        // SAFETY: The kernel writes the parameters before it calls `init`,
        // and their 0444 mode keeps sysfs from writing them afterwards, so
        // nothing writes them while they are read here (module code runs
        // only after they were written).
        let (demo, debug, fail, irqtest, stress, reap_ms, bench, reserve) = unsafe {
            (
                read(addr_of!(DEMO)),
                read(addr_of!(DEBUG)),
                read(addr_of!(FAIL)),
                read(addr_of!(IRQTEST)),
                read(addr_of!(STRESS)),
                read(addr_of!(REAP_MS)),
                read(addr_of!(BENCH)),
                read(addr_of!(RESERVE)),
            )
        };
        // SAFETY: `charp` parameters, as read above.
        let (bench, reserve) = unsafe { (charp(bench), charp(reserve)) };
        Params {
            demo,
            debug,
            fail,
            irqtest,
            stress,
            reap_ms,
            bench,
            reserve,
        }
    }
}

/// The string of a `charp` parameter, if set.
///
/// # Safety
///
/// `param` is a `charp` parameter's value: null, or a NUL-terminated string
/// the kernel's parser keeps until the module is unloaded and nothing
/// changes.
unsafe fn charp(param: *mut kernel::ffi::c_char) -> Option<&'static CStr> {
    if param.is_null() {
        None
    } else {
        // SAFETY: per the caller's guarantee.
        Some(unsafe { CStr::from_char_ptr(param) })
    }
}
