// SPDX-License-Identifier: GPL-2.0

//! Module parameters (`insmod rmm.ko demo=0 debug=1`).
//!
//! The `module!` macro of 6.12 has no parameters, so this does what the C
//! `module_param()` macro does: a `struct kernel_param` (the layout comes from
//! the generated bindings) in the module's `__param` section, pointing at
//! the variable and at the kernel's own parser for its type, plus the
//! `parmtype=` and `parm=` strings `modinfo` shows.

use super::bindings;

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
