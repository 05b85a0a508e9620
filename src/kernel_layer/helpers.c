// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for rmm: each wraps a kernel macro or inline function that Rust
 * cannot call directly. Kept trivially small; all logic lives in Rust.
 */
#include <linux/cpumask.h>
#include <linux/irqflags.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/percpu.h>
#include <linux/percpu_counter.h>
#include <linux/processor.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <linux/spinlock.h>
#include <linux/sprintf.h>
#include <linux/vmalloc.h>

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

/* vmalloc over rmm's pages (kernel_layer/vmap.rs). */

void *rmm_vmap(struct page **pages, unsigned int count)
{
	void *addr = vmap(pages, count, VM_MAP, PAGE_KERNEL);

	/*
	 * Not a tail call: vmap records its caller for /proc/vmallocinfo,
	 * which is to read rmm_vmap, not the mangled Rust function above.
	 */
	barrier();
	return addr;
}

void rmm_virt_to_pages(struct page **out, void *const *addrs, unsigned int count)
{
	unsigned int i;

	for (i = 0; i < count; i++)
		out[i] = virt_to_page(addrs[i]);
}

unsigned long rmm_virt_to_pfn(const void *addr)
{
	return page_to_pfn(virt_to_page(addr));
}

/* An address as the kernel's own views print it, under kptr_restrict. */
int rmm_format_kptr(char *buf, size_t size, const void *ptr)
{
	return scnprintf(buf, size, "%pK", ptr);
}

/*
 * The kernel's reserve for rmm's automatic one: the min watermarks and the
 * managed pages of its low-memory zones, over which __setup_per_zone_wmarks
 * shares min_free_kbytes.
 */
void rmm_kernel_reserve(unsigned long *min_pages, unsigned long *managed_pages)
{
	int nid, i;

	*min_pages = 0;
	*managed_pages = 0;
	for_each_online_node(nid) {
		pg_data_t *pgdat = NODE_DATA(nid);

		for (i = 0; i < MAX_NR_ZONES; i++) {
			struct zone *zone = &pgdat->node_zones[i];

			if (is_highmem(zone) || zone_idx(zone) == ZONE_MOVABLE)
				continue;
			*min_pages += min_wmark_pages(zone);
			*managed_pages += zone_managed_pages(zone);
		}
	}
}

/*
 * For the benchmarks (kernel_layer/bench/) and the CPU threads they and the
 * stress test run on (kernel_layer/cpu_threads.rs).
 */

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

/* Memory nodes (kernel_layer/platform.rs). */

/* __get_free_pages on one node only: no fallback to another node. */
void *rmm_alloc_pages_node(gfp_t gfp, unsigned int order, int nid)
{
	struct page *page = __alloc_pages_noprof(gfp | __GFP_THISNODE, order, nid, NULL);

	return page ? page_address(page) : NULL;
}

int rmm_page_nid(const void *addr)
{
	return page_to_nid(virt_to_page(addr));
}

int rmm_cpu_to_node(unsigned int cpu)
{
	return cpu_to_node(cpu);
}

bool rmm_node_has_memory(int nid)
{
	return node_state(nid, N_MEMORY);
}

int rmm_node_distance(int from, int to)
{
	return node_distance(from, to);
}
