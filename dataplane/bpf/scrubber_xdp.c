// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// scrubber's XDP program: decides in the kernel which frames userspace must see.
//
// Per frame: parse Ethernet and up to two VLAN tags; non-IP frames go to the kernel (ARP, LLDP,
// LACP, ...). The destination address (or, on a `match_source` interface used for the symmetric
// return direction, the source address) is looked up in an LPM trie the daemon keeps in sync:
// no match -> kernel; CLASS_LOCAL (the appliance's own addresses) -> kernel; CLASS_PROTECTED ->
// redirected to the AF_XDP socket bound to this RX queue. When no socket is bound (daemon stopped
// or killed) the redirect falls back to the configured fail action: XDP_PASS (fail open: the
// kernel forwards it when the appliance is a router) or XDP_DROP (fail closed).
//
// The program is attached through netlink, so it outlives the daemon; a restarted daemon finds
// it by name, reuses its maps and inserts its new sockets.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_QUEUES 256
#define MAX_PREFIXES 65536

enum dst_class {
	CLASS_PROTECTED = 1,
	CLASS_LOCAL = 2,
};

enum counter {
	C_NOT_IP = 0,
	C_LOCAL,
	C_UNPROTECTED,
	C_REDIRECT,
	C_NO_SOCKET,
	C_MALFORMED,
	C_COUNT,
};

struct lpm_v4 {
	__u32 prefixlen;
	__u32 addr;
};

struct lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct config {
	__u32 fail_action; // XDP_PASS or XDP_DROP
	__u32 match_source; // classify by source address (return direction)
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, __u8);
} class_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6);
	__type(value, __u8);
} class_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &which);
	if (c)
		*c += 1;
}

static __always_inline int is_vlan(__u16 proto)
{
	return proto == bpf_htons(0x8100) || proto == bpf_htons(0x88a8) || proto == bpf_htons(0x9100);
}

SEC("xdp")
int scrubber_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct config *conf = bpf_map_lookup_elem(&cfg, &zero);
	__u32 fail_action = conf ? conf->fail_action : XDP_PASS;
	__u32 by_source = conf ? conf->match_source : 0;
	__u8 *class = 0;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end) {
		count(C_NOT_IP);
		return XDP_PASS;
	}
	__u16 proto = eth->h_proto;
	void *l3 = eth + 1;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (!is_vlan(proto))
			break;
		if (l3 + 4 > data_end) {
			count(C_MALFORMED);
			return XDP_DROP;
		}
		proto = *(__u16 *)(l3 + 2);
		l3 += 4;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		// Source at byte 12, destination at byte 16 of the IPv4 header.
		if (l3 + 20 > data_end) {
			count(C_MALFORMED);
			return XDP_DROP;
		}
		struct lpm_v4 key = { .prefixlen = 32 };
		__builtin_memcpy(&key.addr, l3 + (by_source ? 12 : 16), 4);
		class = bpf_map_lookup_elem(&class_v4, &key);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		// Source at byte 8, destination at byte 24 of the IPv6 header.
		if (l3 + 40 > data_end) {
			count(C_MALFORMED);
			return XDP_DROP;
		}
		struct lpm_v6 key = { .prefixlen = 128 };
		__builtin_memcpy(key.addr, l3 + (by_source ? 8 : 24), 16);
		class = bpf_map_lookup_elem(&class_v6, &key);
	} else {
		count(C_NOT_IP);
		return XDP_PASS;
	}

	if (!class) {
		count(C_UNPROTECTED);
		return XDP_PASS;
	}
	if (*class != CLASS_PROTECTED) {
		count(C_LOCAL);
		return XDP_PASS;
	}
	__u32 queue = ctx->rx_queue_index;
	if (!bpf_map_lookup_elem(&xsks, &queue)) {
		count(C_NO_SOCKET);
		return fail_action;
	}
	count(C_REDIRECT);
	return bpf_redirect_map(&xsks, queue, fail_action);
}

char _license[] SEC("license") = "Dual BSD/GPL";
