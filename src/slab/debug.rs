// SPDX-License-Identifier: GPL-2.0

//! Debug mode: red zones around objects and poison in free objects.
//!
//! Red zones are the bytes of a slot before and after the object, filled
//! with [`RED_ZONE_BYTE`] when the slab is created and checked on every free
//! and every allocation; a damaged zone is reported and repaired, so the
//! next check reports only new damage. Free objects are filled with
//! [`POISON_FREE`] bytes and a final [`POISON_END`] (the kernel's patterns);
//! the poison is checked when the object is handed out again, which catches
//! writes to freed objects.
//!
//! Allocation state (free or allocated) is tracked separately, in one state
//! byte per object in the slab's bookkeeping (see [`super::slab`]), so a red
//! zone does not have to encode it as SLAB's red-zone words did.

use super::layout::SlabLayout;

/// The byte red zones are filled with (SLUB's `SLUB_RED_ACTIVE`).
pub const RED_ZONE_BYTE: u8 = 0xcc;
/// The byte free objects are filled with (`POISON_FREE`).
pub const POISON_FREE: u8 = 0x6b;
/// The last byte of a poisoned object (`POISON_END`).
pub const POISON_END: u8 = 0xa5;

/// Which red zone of an object was found damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RedZone {
    /// The zone before the object.
    Before,
    /// The zone after the object (and the padding up to the next slot).
    After,
}

impl RedZone {
    /// How the zone is named in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            RedZone::Before => "before",
            RedZone::After => "after",
        }
    }
}

/// Damage found in one red zone: the zone and how many bytes changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RedZoneDamage {
    /// The damaged zone.
    pub(crate) zone: RedZone,
    /// Bytes of the zone that did not hold [`RED_ZONE_BYTE`].
    pub(crate) bad_bytes: usize,
}

/// The two zones of the slot holding the object at `obj`: (start, length)
/// of the zone before and of the zone after.
fn zones(layout: &SlabLayout, obj: *mut u8) -> [(*mut u8, usize); 2] {
    let before_len = layout.obj_offset();
    let after_len = layout.stride() - layout.obj_offset() - layout.object_size();
    [
        (obj.wrapping_sub(before_len), before_len),
        (obj.wrapping_add(layout.object_size()), after_len),
    ]
}

/// Fills both red zones of the object at `obj`.
///
/// # Safety
///
/// `obj` is an object of a slab laid out by `layout` with red zones; its
/// slot is not in use by anyone else.
pub(crate) unsafe fn fill_red_zones(layout: &SlabLayout, obj: *mut u8) {
    for (start, len) in zones(layout, obj) {
        // SAFETY: the zones lie inside the object's slot, which the caller
        // gives us.
        unsafe { start.write_bytes(RED_ZONE_BYTE, len) };
    }
}

/// Checks both red zones of the object at `obj`, repairing damaged ones;
/// returns the damage found, before-zone first.
///
/// # Safety
///
/// As for [`fill_red_zones`].
pub(crate) unsafe fn check_red_zones(
    layout: &SlabLayout,
    obj: *mut u8,
) -> [Option<RedZoneDamage>; 2] {
    let mut found = [None, None];
    for ((start, len), (slot, zone)) in zones(layout, obj)
        .into_iter()
        .zip(found.iter_mut().zip([RedZone::Before, RedZone::After]))
    {
        // SAFETY: the zone lies inside the slot the caller gives us.
        let bytes = unsafe { core::slice::from_raw_parts_mut(start, len) };
        let bad_bytes = bytes.iter().filter(|&&byte| byte != RED_ZONE_BYTE).count();
        if bad_bytes != 0 {
            bytes.fill(RED_ZONE_BYTE);
            *slot = Some(RedZoneDamage { zone, bad_bytes });
        }
    }
    found
}

/// Fills the object at `obj` with the free poison.
///
/// # Safety
///
/// `obj` is an object of `layout.object_size()` bytes nobody else uses.
pub(crate) unsafe fn poison(layout: &SlabLayout, obj: *mut u8) {
    let size = layout.object_size();
    // SAFETY: the caller gives us the object's bytes.
    unsafe {
        obj.write_bytes(POISON_FREE, size - 1);
        obj.add(size - 1).write(POISON_END);
    }
}

/// Checks the poison of the free object at `obj`: the offset of the first
/// byte that changed, if any.
///
/// # Safety
///
/// As for [`poison`].
pub(crate) unsafe fn check_poison(layout: &SlabLayout, obj: *const u8) -> Option<usize> {
    let size = layout.object_size();
    // SAFETY: the caller gives us the object's bytes.
    let bytes = unsafe { core::slice::from_raw_parts(obj, size) };
    let (body, end) = bytes.split_at(size - 1);
    body.iter()
        .position(|&byte| byte != POISON_FREE)
        .or_else(|| (end[0] != POISON_END).then_some(size - 1))
}
