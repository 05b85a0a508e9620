// SPDX-License-Identifier: GPL-2.0

//! The page allocator's memory nodes: which node to fall back to, and the
//! per-node counters the kernel shows in `/sys/devices/system/node/*/numastat`.
//!
//! Every chunk of the pool lives on one node (the platform is asked for
//! chunks on a given node, `__GFP_THISNODE`), and the buddy lists are kept
//! per node ([`crate::buddy`]). A request names a preferred node (the
//! calling CPU's unless the caller pins one) and is served from that node's
//! lists if it can be; otherwise from the other nodes in increasing
//! distance, as the kernel's zonelist orders them ([`NodeOrder`]). Each
//! allocation is counted on the node that served it, with the kernel's
//! names ([`NodeStats`]).

use crate::platform::{Platform, MAX_NODES};
use core::sync::atomic::{AtomicU64, Ordering};

/// For every node, the nodes with memory in the order a request preferring
/// it tries them: itself first, then the others by increasing distance
/// (ties by node number), as `build_zonelists` orders a node's zonelist.
/// Computed once, when the allocator is created: rmm does not follow nodes
/// coming or going later.
///
/// # Invariants
///
/// `order[n][..len[n]]` are distinct node numbers below `nr_nodes`, all
/// with memory; `n` itself is first if it has memory.
pub(crate) struct NodeOrder {
    nr_nodes: usize,
    order: [[u8; MAX_NODES]; MAX_NODES],
    len: [u8; MAX_NODES],
}

impl NodeOrder {
    /// The fallback order of every node of `platform`.
    pub(crate) fn new<P: Platform>(platform: &P) -> Self {
        let nr_nodes = platform.nr_nodes().clamp(1, MAX_NODES);
        let mut order = [[0u8; MAX_NODES]; MAX_NODES];
        let mut len = [0u8; MAX_NODES];
        for from in 0..nr_nodes {
            let mut nodes = [0u8; MAX_NODES];
            let mut count = 0;
            for to in 0..nr_nodes {
                if platform.node_has_memory(to) {
                    nodes[count] = to as u8;
                    count += 1;
                }
            }
            let key = |node: &u8| {
                let node = usize::from(*node);
                (node != from, platform.node_distance(from, node), node)
            };
            nodes[..count].sort_unstable_by_key(key);
            order[from] = nodes;
            len[from] = count as u8;
        }
        // INVARIANT: each row lists the nodes with memory once, the node
        // itself (if it has memory) first.
        NodeOrder {
            nr_nodes,
            order,
            len,
        }
    }

    /// Number of node numbers (`nr_node_ids`, at most [`MAX_NODES`]).
    pub(crate) fn nr_nodes(&self) -> usize {
        self.nr_nodes
    }

    /// The nodes a request preferring `node` tries, in order.
    pub(crate) fn fallbacks(&self, node: usize) -> &[u8] {
        let node = node.min(self.nr_nodes - 1);
        &self.order[node][..usize::from(self.len[node])]
    }

    /// Whether `node` is a node with memory that requests may name.
    pub(crate) fn has_memory(&self, node: usize) -> bool {
        node < self.nr_nodes && self.fallbacks(node).first() == Some(&(node as u8))
    }
}

/// What the allocations and frees of one node's pages were, with the
/// kernel's numastat names. An allocation is a *hit* on the node it wanted
/// and got, a *miss* on the node that served it instead, and *foreign* on
/// the node it wanted and did not get; *local* or *other* by whether the
/// CPU that asked is on the serving node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Chunks held on the node.
    pub chunks: usize,
    /// Pages of those chunks.
    pub pages_total: usize,
    /// Pages on the node's buddy lists.
    pub pages_free: usize,
    /// Pages on per-CPU lists of the node's CPUs (all from this node).
    pub pages_pcp: usize,
    /// Allocations served here that preferred this node (`numa_hit`).
    pub numa_hit: u64,
    /// Allocations served here that preferred another node (`numa_miss`):
    /// fallbacks into this node.
    pub numa_miss: u64,
    /// Allocations that preferred this node and were served by another
    /// (`numa_foreign`): fallbacks out of this node.
    pub numa_foreign: u64,
    /// Allocations served here for a CPU of this node (`local_node`).
    pub local_node: u64,
    /// Allocations served here for a CPU of another node (`other_node`).
    pub other_node: u64,
    /// Frees of this node's pages by a CPU of this node.
    pub free_local: u64,
    /// Frees of this node's pages by a CPU of another node: they go back to
    /// this node's lists, never to the freeing CPU's.
    pub free_remote: u64,
}

/// One node's counters of what is rare: allocations that did not stay on
/// their node and frees from another node. Everything a node serves is
/// counted where it is served, without an atomic (per CPU list, or under
/// the buddy lock); [`super::PageAllocator::stats`] takes these out of
/// those totals to get hits and local ones, as the kernel's numastat
/// counts every event once.
#[derive(Default)]
pub(crate) struct NodeCounters {
    pub(crate) numa_miss: AtomicU64,
    pub(crate) numa_foreign: AtomicU64,
    pub(crate) other_node: AtomicU64,
    pub(crate) free_remote: AtomicU64,
}

impl NodeCounters {
    /// Counts one event. Release: a reader that sees it (Acquire) also
    /// sees the event's own count, made before it.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Release);
    }
}

/// Counts an allocation that preferred node `wanted`, was served by node
/// `served`, for a CPU of node `cpu_node`, if it left its node.
pub(crate) fn count_alloc(
    counters: &[NodeCounters; MAX_NODES],
    wanted: usize,
    served: usize,
    cpu_node: usize,
) {
    let here = &counters[served & (MAX_NODES - 1)];
    if wanted != served {
        NodeCounters::bump(&here.numa_miss);
        NodeCounters::bump(&counters[wanted & (MAX_NODES - 1)].numa_foreign);
    }
    if cpu_node != served {
        NodeCounters::bump(&here.other_node);
    }
}
