// tc programs that put a link on VLAN `VID` on kernels built without 802.1Q devices: `PUSH`
// (egress) tags every untagged frame; the other (ingress) removes tag `VID` and drops other VIDs.
// With VLAN offload off on the veth, the tag travels in-band, so XDP on the peer sees it.
// Build: clang -O2 -target bpf -DVID=N [-DPUSH] -c vlan.bpf.c -o OUT.o
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#define SEC(name) __attribute__((section(name), used))

static long (*bpf_skb_vlan_push)(struct __sk_buff *skb, __u16 proto, __u16 tci) = (void *)BPF_FUNC_skb_vlan_push;
static long (*bpf_skb_vlan_pop)(struct __sk_buff *skb) = (void *)BPF_FUNC_skb_vlan_pop;

#ifdef PUSH
SEC("tc") int vlan_push(struct __sk_buff *skb)
{
	if (skb->vlan_present)
		return TC_ACT_OK;
	return bpf_skb_vlan_push(skb, __builtin_bswap16(0x8100), VID) ? TC_ACT_SHOT : TC_ACT_OK;
}
#else
SEC("tc") int vlan_pop(struct __sk_buff *skb)
{
	if (!skb->vlan_present)
		return TC_ACT_OK;
	if ((skb->vlan_tci & 0x0fff) != VID)
		return TC_ACT_SHOT;
	return bpf_skb_vlan_pop(skb) ? TC_ACT_SHOT : TC_ACT_OK;
}
#endif

char _license[] SEC("license") = "GPL";
