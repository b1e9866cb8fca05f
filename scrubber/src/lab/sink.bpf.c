// The lab benchmark's sink on origin:o0: drops IPv4 UDP in XDP (the benchmark's traffic) and
// passes everything else (ARP, the scrubber's own traffic). On veth, the receiving side's work
// runs in the sender's softirq, here inside the worker's transmit: the cheapest possible sink
// keeps that part of the worker's CPU time small and the same in every mode.
// Built by scrubber/build.rs (clang -O2 -target bpf) and embedded in the binary.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>

#define SEC(name) __attribute__((section(name), used))

SEC("xdp") int sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != __builtin_bswap16(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	return ip->protocol == IPPROTO_UDP ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
