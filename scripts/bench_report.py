#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turns the result lines of `make bench` into a table, CSV files, a plot and
the README's performance section.

scripts/bench runs the guests and calls this with the directory holding
their output (raw/icount.txt, raw/smp.txt, raw/numa.txt, raw/meta.txt). Every
result line looks like

    rmm_bench: case=pair size=64 impl=rmm ops=100000 ns=42731846

(see src/bench_spec.rs). Single-CPU figures come from an -icount boot, where a
guest nanosecond is one guest instruction; multi-CPU figures are wall-time
ratios taken in the same boot (smp_* on one memory node, numa_remote on two).
"""

import argparse
import csv
import os
import statistics
import sys

PREFIX = "rmm_bench:"
README_START = "<!-- BENCH-START -->"
README_END = "<!-- BENCH-END -->"

# The multi-CPU measurements: case, table column, plot label, summary unit.
SMP_CASES = (
    ("smp_pair", "pair", "all vCPUs, pairs", "wall ns/op (median), 2 vCPUs"),
    ("smp_batch", "batch", "all vCPUs, batches", "wall ns/op (median), 2 vCPUs"),
    ("smp_remote", "remote free", "remote free", "wall ns/op (median), 2 vCPUs"),
    ("numa_remote", "remote free, 2 nodes", "remote free, node 0 to node 1",
     "wall ns/op (median), 2 vCPUs on 2 nodes"),
)

# The pieces of the `parts` case (`case=part impl=NAME` lines), in table
# order, with what each measures (src/kernel_layer/bench/parts.rs). The
# last two are only in results of earlier runs, before the fast paths
# became CPU-local; a piece missing from the results is left out.
PARTS = (
    ("with_local", "CPU-local section (PerCpu::with_local: interrupts off and on, "
                   "per-CPU base %gs-relative, one load), as every fast path runs"),
    ("lock", "interrupt-safe lock + unlock (spin_lock_irqsave helpers) around an "
             "increment: the slow paths' locks, the fast paths' before with_local"),
    ("owner_word", "page owner word, as a free reads it (PageAllocator::owner_word: "
                   "radix directory, chunk check)"),
    ("block_owner", "page owner lookup of the slow paths (PageAllocator::block_owner: "
                    "owner word, else the covering block's head)"),
    ("contains", "free validation (KmemCache::contains: owner word, tag, slab base, "
                 "offset range, reciprocal index)"),
    ("this_cpu", "CPU number (Platform::this_cpu, a C helper)"),
    ("percpu_get", "per-CPU slot (KernelPerCpu::get: bound check, per_cpu_ptr helper)"),
)


def parse_lines(path):
    """The key=value dictionaries of the result lines in `path`, and the
    header lines (key=value pairs of lines without case=)."""
    records, header = [], {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            at = line.find(PREFIX)
            if at < 0:
                continue
            fields = {}
            for word in line[at + len(PREFIX):].split():
                if "=" in word:
                    key, value = word.split("=", 1)
                    fields[key] = value
            if "case" in fields and "impl" in fields:
                for key in ("ops", "ns", "size", "order", "threads", "rep", "ctor",
                            "slabs_grown"):
                    if key in fields:
                        fields[key] = int(fields[key])
                records.append(fields)
            else:
                header.update(fields)
    return records, header


def read_meta(path):
    meta = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if "=" in line:
                    key, value = line.rstrip("\n").split("=", 1)
                    meta[key] = value
    return meta


def per_op(record):
    return record["ns"] / record["ops"]


def param_of(record):
    if "size" in record:
        return "size", record["size"]
    if "order" in record:
        return "order", record["order"]
    return "", ""


class Single:
    """Single-CPU figures: per (case, param name, param value, impl)."""

    def __init__(self, records):
        self.by_key = {}
        for r in records:
            name, value = param_of(r)
            self.by_key[(r["case"], name, value, r["impl"])] = r

    def get(self, case, name, value, impl):
        return self.by_key.get((case, name, value, impl))

    def cost(self, case, name, value, impl):
        r = self.get(case, name, value, impl)
        return per_op(r) if r else None

    def values(self, case, name):
        return sorted({k[2] for k in self.by_key if k[0] == case and k[1] == name})

    def empty(self, impl):
        r = self.get("empty", "", "", impl)
        return per_op(r) if r else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def smp_summary(records):
    """{(case, size): dict(median, lo, hi, n, rmm, kernel)} from per-repetition
    wall times: the ratio of each repetition, then the median over them."""
    reps = {}
    cases = {case for case, _, _, _ in SMP_CASES}
    for r in records:
        if r["case"] not in cases:
            continue
        key = (r["case"], r["size"])
        reps.setdefault(key, {}).setdefault(r["rep"], {})[r["impl"]] = r
    out = {}
    for key, by_rep in reps.items():
        ratios, rmm, kernel = [], [], []
        for pair in by_rep.values():
            if "rmm" in pair and "kernel" in pair:
                ratios.append(pair["rmm"]["ns"] / pair["kernel"]["ns"])
                rmm.append(per_op(pair["rmm"]))
                kernel.append(per_op(pair["kernel"]))
        if ratios:
            q1, _, q3 = (statistics.quantiles(ratios, n=4, method="inclusive")
                         if len(ratios) > 1 else (ratios[0],) * 3)
            out[key] = dict(
                median=statistics.median(ratios),
                q1=q1,
                q3=q3,
                lo=min(ratios),
                hi=max(ratios),
                n=len(ratios),
                rmm=statistics.median(rmm),
                kernel=statistics.median(kernel),
            )
    return out


def fmt(value, digits=1):
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}"


def build_tables(single, smp):
    """Tables as (title, note, header, rows)."""
    tables = []
    rows = []
    for size in single.values("pair", "size"):
        row = [str(size)]
        for case in ("pair", "batch", "kmalloc"):
            rmm = single.cost(case, "size", size, "rmm")
            kernel = single.cost(case, "size", size, "kernel")
            row += [fmt(rmm), fmt(kernel), fmt_ratio(ratio(rmm, kernel))]
            if case == "batch":
                r = single.get(case, "size", size, "rmm")
                grown = None
                if r is not None and "slabs_grown" in r:
                    grown = r["slabs_grown"] / (r["ops"] / 1000)
                row.append("-" if grown is None else f"{grown:g}")
        rows.append(row)
    tables.append((
        "Objects: instructions per allocation + free (1 vCPU, -icount)",
        "pair: alloc+free pairs on a cache of its own; batch: 1000 allocations, "
        "then 1000 frees (per object); kmalloc: kmalloc+kfree pairs, size not a "
        "compile-time constant. Kernel side: SLUB kmem_cache (SLAB_NO_MERGE), "
        "__kmalloc/kfree. rmm slabs/round: slabs rmm built per batch round "
        "(freed slabs beyond its free limit go back to the page allocator).",
        ["size", "pair rmm", "pair SLUB", "ratio", "batch rmm", "batch SLUB", "ratio",
         "rmm slabs/round", "kmalloc rmm", "kmalloc kernel", "ratio"],
        rows,
    ))

    rows = []
    for order in single.values("page_pair", "order"):
        rmm = single.cost("page_pair", "order", order, "rmm")
        kernel = single.cost("page_pair", "order", order, "kernel")
        rows.append([f"pair, order {order}", fmt(rmm), fmt(kernel), fmt_ratio(ratio(rmm, kernel))])
    rmm = single.cost("page_batch", "order", 0, "rmm")
    kernel = single.cost("page_batch", "order", 0, "kernel")
    if rmm is not None or kernel is not None:
        rows.append(["batch of 64 order-0 pages (per page)", fmt(rmm), fmt(kernel),
                     fmt_ratio(ratio(rmm, kernel))])
    tables.append((
        "Pages: instructions per block allocation + free (1 vCPU, -icount)",
        "Kernel side: __get_free_pages/free_pages, the address interface rmm's "
        "page allocator also has.",
        ["measurement", "rmm", "kernel", "ratio"],
        rows,
    ))

    rows = []
    for size in single.values("vmalloc", "size"):
        rmm = single.cost("vmalloc", "size", size, "rmm")
        kernel = single.cost("vmalloc", "size", size, "kernel")
        rows.append([f"{size // 4096} pages ({size // 1024} KiB)", fmt(rmm), fmt(kernel),
                     fmt_ratio(ratio(rmm, kernel))])
    if rows:
        tables.append((
            "vmalloc: instructions per vmalloc + vfree (1 vCPU, -icount)",
            "rmm: order-0 pages from its page allocator (per-CPU lists), their "
            "addresses in a kmalloc'd array, mapped with vmap, unmapped with "
            "vunmap. Kernel side: vmalloc/vfree (pages from alloc_pages_bulk). "
            "Both map and unmap through the same kernel code, whose TLB flushes "
            "on unmap are lazy.",
            ["area", "rmm", "kernel", "ratio"],
            rows,
        ))

    rows = []
    for case, what in (("counter_add", "add"), ("counter_sum", "exact sum")):
        rmm = single.cost(case, "", "", "rmm")
        kernel = single.cost(case, "", "", "kernel")
        atomic = single.cost(case, "", "", "atomic")
        rows.append([what, fmt(rmm), fmt(kernel), fmt(atomic), fmt_ratio(ratio(rmm, kernel))])
    tables.append((
        "Counters: instructions per operation (1 vCPU, -icount)",
        "rmm PerCpuCounter vs percpu_counter_add_batch (global batch) and "
        "__percpu_counter_sum; atomic: one shared AtomicI64 (fetch_add, load).",
        ["operation", "rmm", "percpu_counter", "atomic", "ratio rmm/kernel"],
        rows,
    ))

    rows = []
    for name, what in PARTS:
        cost = single.cost("part", "", "", name)
        if cost is not None:
            rows.append([name, what, fmt(cost)])
    if rows:
        tables.append((
            "Pieces of rmm's fast paths: instructions per call (1 vCPU, -icount)",
            "Each measured alone as one out-of-line call in a loop, loop and call "
            f"included ({fmt(single.empty('call'), 0)} for an empty call).",
            ["piece", "what", "instructions"],
            rows,
        ))

    rows = []
    for size in single.values("ctor_warm", "size"):
        row = [str(size)]
        for case in ("ctor_cold", "ctor_warm", "ctor_pair"):
            for impl in ("rmm", "kernel"):
                r = single.get(case, "size", size, impl)
                if r is None:
                    row.append("-")
                elif r.get("ctor", 0) == 0:
                    row.append(f"{r['ops']} / 0")
                else:
                    row.append(f"{r['ops'] / r['ctor']:.2f}")
        w_rmm = single.cost("ctor_warm", "size", size, "rmm")
        w_kernel = single.cost("ctor_warm", "size", size, "kernel")
        row.append(fmt_ratio(ratio(w_rmm, w_kernel)))
        rows.append(row)
    tables.append((
        "Constructors: allocations served per constructor call (1 vCPU, -icount)",
        "cold: the first 1000 allocations of a new cache; warm: further rounds "
        "of 1000 allocations then 1000 frees (slabs given back and rebuilt "
        "cost constructor calls again); pair: alloc+free pairs once warm "
        "(\"N / 0\": no constructor call in N allocations). Last column: "
        "instructions per warm batch object, rmm / SLUB.",
        ["size", "cold rmm", "cold SLUB", "warm rmm", "warm SLUB", "pair rmm", "pair SLUB",
         "warm cost ratio"],
        rows,
    ))

    rows = []
    columns = [c for c in SMP_CASES if any(k[0] == c[0] for k in smp)]
    for size in sorted({k[1] for k in smp}):
        row = [str(size)]
        for case, _, _, _ in columns:
            s = smp.get((case, size))
            row.append("-" if s is None else
                       f"{s['median']:.2f} ({s['q1']:.2f}-{s['q3']:.2f})")
        rows.append(row)
    if rows:
        n = max(s["n"] for s in smp.values())
        tables.append((
            "Several CPUs: wall time rmm / SLUB (2 vCPUs, multi-threaded TCG)",
            f"Median of {n} repetitions (interquartile range; lowest and highest "
            "in bench/summary.csv). pair/batch: every vCPU "
            "allocating and freeing at once on one shared cache; remote: one vCPU "
            "allocates batches of 1000, the other frees each batch while the next is "
            "allocated; these three on one memory node. remote free, 2 nodes: the "
            "same hand-off in a boot with two memory nodes of one vCPU each, from "
            "the vCPU of node 0 (whose node the slabs come from) to the vCPU of "
            "node 1. TCG gives remote memory no extra latency: the difference is "
            "the allocators' own node handling.",
            ["size"] + [column for _, column, _, _ in columns],
            rows,
        ))
    return tables


def targets(single, smp):
    """The issue's targets: (text, met)."""
    out = []
    worst = None
    for size in single.values("pair", "size"):
        r = ratio(single.cost("pair", "size", size, "rmm"),
                  single.cost("pair", "size", size, "kernel"))
        if r is not None and (worst is None or r > worst[1]):
            worst = (size, r)
    if worst:
        out.append((f"object pair <= 1.0x SLUB: worst {worst[1]:.2f}x (size {worst[0]})",
                    worst[1] <= 1.0))
    r = ratio(single.cost("page_pair", "order", 0, "rmm"),
              single.cost("page_pair", "order", 0, "kernel"))
    if r is not None:
        out.append((f"order-0 page pair <= 1.0x the page allocator: {r:.2f}x", r <= 1.0))
    r = ratio(single.cost("counter_add", "", "", "rmm"),
              single.cost("counter_add", "", "", "kernel"))
    if r is not None:
        out.append((f"counter add <= percpu_counter_add_batch: {r:.2f}x", r <= 1.0))
    return out


def print_tables(tables, target_list, single):
    for title, note, header, rows in tables:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        print()
        print(title)
        print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
        for row in rows:
            print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
    print()
    print(f"empty loop: {fmt(single.empty('loop'), 2)} instructions per iteration; "
          f"with two out-of-line calls: {fmt(single.empty('call'), 2)} (included above, "
          "not subtracted)")
    for text, met in target_list:
        print(("met:    " if met else "missed: ") + text)


def markdown(tables, target_list, single, meta):
    lines = [README_START, "## Performance against the kernel's allocators", ""]
    lines.append(
        f"Generated by `make bench` (scripts/bench) on {meta.get('date', '?')} from "
        f"commit {meta.get('commit', '?')}; raw results, CSV and plot in "
        "[bench/](bench/). One run took "
        f"{meta.get('seconds', '?')} s on {meta.get('host', 'this machine')}."
    )
    lines.append("")
    lines.append(
        f"- Kernel: Linux {meta.get('kernel', '?')}, rmm's `perf` test kernel: tinyconfig "
        "plus `scripts/config/base.config` (" + meta.get("config", "?") + ")."
    )
    lines.append(
        f"- Single-CPU figures: {meta.get('qemu', 'QEMU')}, 1 vCPU, "
        "`-icount shift=0,sleep=off` (single-threaded TCG), where a guest nanosecond "
        "is one guest instruction: the figures are guest instructions per operation, "
        f"identical from run to run ({meta.get('iters', '?')} pairs per timed loop). An "
        f"empty loop iteration costs {fmt(single.empty('loop'), 0)} and one with two "
        f"out-of-line calls {fmt(single.empty('call'), 0)}; that is included, not "
        "subtracted. Every operation is one out-of-line call on both sides."
    )
    lines.append(
        "- Multi-CPU figures: 2 vCPUs under multi-threaded TCG on a "
        f"{meta.get('host_cpus', '?')}-core host: wall time, so only the ratio of rmm "
        "to SLUB measured back to back in the same boot means anything "
        f"({meta.get('smp_iters', '?')} operations per thread, "
        f"{meta.get('reps', '?')} repetitions); one memory node, but for the remote "
        "free across two nodes (`scripts/vm-run --nodes 2`: QEMU `-numa`, one vCPU "
        "and half the memory per node)."
    )
    lines.append("- Ratio: rmm / kernel; below 1.00 rmm is cheaper.")
    lines.append("")
    for title, note, header, rows in tables:
        lines.append(f"**{title}.** {note}")
        lines.append("")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(" --- " for _ in header) + "|")
        for row in rows:
            lines.append("| " + " | ".join(str(x) for x in row) + " |")
        lines.append("")
    lines.append("![rmm / kernel per object size, page order and CPU count](bench/ratios.png)")
    lines.append("")
    lines.append("Targets of the issue (aims, not assertions):")
    lines.append("")
    for text, met in target_list:
        lines.append(f"- {'met' if met else 'missed'}: {text}")
    lines.append("")
    lines.append("Where the instructions go, and why: [docs/benchmarks.md](docs/benchmarks.md).")
    lines.append(README_END)
    return "\n".join(lines) + "\n"


def update_readme(path, section):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = text.find(README_START)
    end = text.find(README_END)
    if start < 0 or end < start:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        text = text[:start] + section + text[end + len(README_END):].lstrip("\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_csv(path, records, mode):
    fields = ["mode", "case", "size", "order", "threads", "rep", "impl", "ops", "ns",
              "ns_per_op", "ctor", "slabs_grown"]
    new = not os.path.exists(path)
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if new:
            w.writerow(fields)
        for r in records:
            w.writerow([mode] + [r.get(k, "") for k in fields[1:9]]
                       + [f"{per_op(r):.3f}", r.get("ctor", ""), r.get("slabs_grown", "")])


def write_summary_csv(path, single, smp):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["case", "param", "value", "rmm", "kernel", "ratio", "ratio_min",
                    "ratio_max", "unit"])
        for case in ("pair", "batch", "kmalloc", "ctor_warm", "ctor_pair"):
            for size in single.values(case, "size"):
                rmm = single.cost(case, "size", size, "rmm")
                kernel = single.cost(case, "size", size, "kernel")
                w.writerow([case, "size", size, fmt(rmm, 2), fmt(kernel, 2),
                            fmt(ratio(rmm, kernel), 3), "", "", "instructions/op"])
        for size in single.values("vmalloc", "size"):
            rmm = single.cost("vmalloc", "size", size, "rmm")
            kernel = single.cost("vmalloc", "size", size, "kernel")
            w.writerow(["vmalloc", "size", size, fmt(rmm, 2), fmt(kernel, 2),
                        fmt(ratio(rmm, kernel), 3), "", "", "instructions/op"])
        for case in ("page_pair", "page_batch"):
            for order in single.values(case, "order"):
                rmm = single.cost(case, "order", order, "rmm")
                kernel = single.cost(case, "order", order, "kernel")
                w.writerow([case, "order", order, fmt(rmm, 2), fmt(kernel, 2),
                            fmt(ratio(rmm, kernel), 3), "", "", "instructions/op"])
        for case in ("counter_add", "counter_sum"):
            rmm = single.cost(case, "", "", "rmm")
            kernel = single.cost(case, "", "", "kernel")
            w.writerow([case, "", "", fmt(rmm, 2), fmt(kernel, 2),
                        fmt(ratio(rmm, kernel), 3), "", "", "instructions/op"])
            atomic = single.cost(case, "", "", "atomic")
            w.writerow([case, "impl", "atomic", fmt(atomic, 2), "", "", "", "",
                        "instructions/op"])
        for name, _ in PARTS:
            cost = single.cost("part", "", "", name)
            if cost is not None:
                w.writerow(["part", "piece", name, fmt(cost, 2), "", "", "", "",
                            "instructions/call"])
        units = {case: unit for case, _, _, unit in SMP_CASES}
        for case, _, _, _ in SMP_CASES:
            for (c, size), s in sorted(smp.items()):
                if c != case:
                    continue
                w.writerow([case, "size", size, fmt(s["rmm"], 1), fmt(s["kernel"], 1),
                            f"{s['median']:.3f}", f"{s['lo']:.3f}", f"{s['hi']:.3f}",
                            units[case]])


def plot(path, single, smp):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    ax = axes[0][0]
    for case, label in (("pair", "cache pair"), ("batch", "cache batch"),
                        ("kmalloc", "kmalloc pair")):
        sizes = single.values(case, "size")
        ys = [ratio(single.cost(case, "size", s, "rmm"), single.cost(case, "size", s, "kernel"))
              for s in sizes]
        ax.plot(sizes, ys, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("object size (bytes)")
    ax.set_ylabel("rmm / SLUB (instructions)")
    ax.set_title("Objects, 1 vCPU (-icount)")

    ax = axes[0][1]
    orders = single.values("page_pair", "order")
    ys = [ratio(single.cost("page_pair", "order", o, "rmm"),
                single.cost("page_pair", "order", o, "kernel")) for o in orders]
    ax.plot(orders, ys, marker="o", label="block pair")
    b = ratio(single.cost("page_batch", "order", 0, "rmm"),
              single.cost("page_batch", "order", 0, "kernel"))
    if b is not None:
        ax.plot([0], [b], marker="s", linestyle="none", label="batch of 64 pages")
    ax.set_xlabel("page order")
    ax.set_ylabel("rmm / page allocator (instructions)")
    ax.set_title("Pages, 1 vCPU (-icount)")

    ax = axes[1][0]
    names = ["add", "exact sum"]
    width = 0.27
    for i, impl in enumerate(("rmm", "kernel", "atomic")):
        ys = [single.cost(c, "", "", impl) or 0 for c in ("counter_add", "counter_sum")]
        ax.bar([x + (i - 1) * width for x in range(len(names))], ys, width,
               label={"kernel": "percpu_counter"}.get(impl, impl))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_ylabel("instructions per operation")
    ax.set_title("Counters, 1 vCPU (-icount)")
    ax.legend()

    ax = axes[1][1]
    sizes = sorted({k[1] for k in smp})
    for i, (case, _, label, _) in enumerate(SMP_CASES):
        xs, ys, lo, hi = [], [], [], []
        for j, size in enumerate(sizes):
            s = smp.get((case, size))
            if s:
                xs.append(j + (i - 1.5) * 0.18)
                ys.append(s["median"])
                lo.append(s["median"] - s["q1"])
                hi.append(s["q3"] - s["median"])
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", linestyle="none", capsize=3,
                        label=label)
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels([f"{s} B" for s in sizes])
    ax.set_ylabel("rmm / SLUB (wall time: median, quartiles)")
    ax.set_title("2 vCPUs (multi-threaded TCG)")

    for row in axes:
        for ax in row:
            if ax is not axes[1][0]:
                ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
                ax.set_ylim(bottom=0)
                ax.legend()
            ax.grid(True, alpha=0.3)
    fig.suptitle("rmm against the kernel's allocators (below 1: rmm cheaper)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", required=True, help="bench directory (raw/ inside)")
    parser.add_argument("--readme", help="README to rewrite between the BENCH markers")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()

    raw = os.path.join(args.dir, "raw")
    meta = read_meta(os.path.join(raw, "meta.txt"))
    single_records, header = parse_lines(os.path.join(raw, "icount.txt"))
    smp_records, smp_header = [], {}
    if os.path.exists(os.path.join(raw, "smp.txt")):
        smp_records, smp_header = parse_lines(os.path.join(raw, "smp.txt"))
    numa_records = []
    if os.path.exists(os.path.join(raw, "numa.txt")):
        numa_records, _ = parse_lines(os.path.join(raw, "numa.txt"))
    if not single_records:
        sys.exit("bench_report: no result lines in raw/icount.txt")
    meta.setdefault("kernel", header.get("kernel", "?"))
    meta.setdefault("iters", header.get("iters", "?"))
    meta.setdefault("smp_iters", smp_header.get("iters", "?"))
    meta.setdefault("reps", smp_header.get("reps", "?"))

    single = Single(single_records)
    smp = smp_summary(smp_records + numa_records)
    tables = build_tables(single, smp)
    target_list = targets(single, smp)
    print_tables(tables, target_list, single)

    results = os.path.join(args.dir, "results.csv")
    if os.path.exists(results):
        os.remove(results)
    write_csv(results, single_records, "icount-1cpu")
    write_csv(results, smp_records, "mttcg-2cpu")
    write_csv(results, numa_records, "mttcg-2cpu-2nodes")
    write_summary_csv(os.path.join(args.dir, "summary.csv"), single, smp)
    written = [results, os.path.join(args.dir, "summary.csv")]
    if not args.no_plot:
        png = os.path.join(args.dir, "ratios.png")
        plot(png, single, smp)
        written.append(png)
    if args.readme:
        update_readme(args.readme, markdown(tables, target_list, single, meta))
        written.append(args.readme)
    print()
    print("bench: wrote " + ", ".join(os.path.relpath(p) for p in written))


if __name__ == "__main__":
    main()
