// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for rmm: each wraps a kernel macro or inline function that Rust
 * cannot call directly. Kept trivially small; all logic lives in Rust.
 */
#include <linux/cpumask.h>
#include <linux/irqflags.h>
#include <linux/percpu.h>
#include <linux/percpu_counter.h>
#include <linux/processor.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <linux/spinlock.h>

#include "helpers.h"

unsigned long rmm_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

void rmm_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}

void __percpu *rmm_alloc_percpu(size_t size, size_t align)
{
	return __alloc_percpu_gfp(size, align, GFP_KERNEL);
}

void *rmm_per_cpu_ptr(void __percpu *ptr, unsigned int cpu)
{
	return per_cpu_ptr(ptr, cpu);
}

unsigned int rmm_raw_smp_processor_id(void)
{
	return raw_smp_processor_id();
}

void rmm_cond_resched(void)
{
	cond_resched();
}

/* Used where lockdep traces interrupt state (CONFIG_TRACE_IRQFLAGS). */
unsigned long rmm_local_irq_save(void)
{
	unsigned long flags;

	local_irq_save(flags);
	return flags;
}

void rmm_local_irq_restore(unsigned long flags)
{
	local_irq_restore(flags);
}

/* For the benchmarks (bench.rs). */

/* percpu_counter_init() is a macro with a static lock class key. */
int rmm_percpu_counter_init(struct percpu_counter *fbc, s64 amount)
{
	return percpu_counter_init(fbc, amount, GFP_KERNEL);
}

bool rmm_cpu_online(unsigned int cpu)
{
	return cpu_online(cpu);
}

void rmm_cpu_relax(void)
{
	cpu_relax();
}
