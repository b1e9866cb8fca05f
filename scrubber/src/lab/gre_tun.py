# A userspace GRE (RFC 2784) tunnel endpoint for kernels built without ip_gre.
# argv: NAME LOCAL REMOTE. TUN device NAME (made beforehand with `ip tuntap add dev NAME mode tun`)
# receives the inner packet of every IPv4 GRE packet from REMOTE to LOCAL (checksum, key and
# sequence fields skipped; inner IPv4 or IPv6); packets routed into NAME leave GRE-encapsulated
# to REMOTE. One line on stdout once both ends are open.
import fcntl, os, select, socket, struct, sys

name, local, remote = sys.argv[1], sys.argv[2], sys.argv[3]
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
raw.bind((local, 0))  # only GRE addressed to LOCAL; sent GRE leaves from LOCAL
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
print("gre endpoint", name, "local", local, "remote", remote, flush=True)
decap = encap = 0
while True:
    ready, _, _ = select.select([tun, raw], [], [])
    if raw in ready:
        pkt, (src, _) = raw.recvfrom(65535)
        ihl = (pkt[0] & 0x0F) * 4
        if src != remote or len(pkt) < ihl + 4:
            continue
        flags, proto = struct.unpack_from("!HH", pkt, ihl)
        if flags & 0x4007:  # routing present or version != 0
            continue
        off = ihl + 4 + 4 * sum(1 for bit in (0x8000, 0x2000, 0x1000) if flags & bit)
        if proto in (0x0800, 0x86DD) and len(pkt) > off:
            os.write(tun, pkt[off:])
            decap += 1
    if tun in ready:
        inner = os.read(tun, 65535)
        if inner:
            proto = 0x0800 if inner[0] >> 4 == 4 else 0x86DD
            raw.sendto(struct.pack("!HH", 0, proto) + inner, (remote, 0))
            encap += 1
