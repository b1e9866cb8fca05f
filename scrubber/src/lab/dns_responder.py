# A small authoritative-looking DNS responder for the lab: answers every query for any name
# with A 198.18.100.10, AAAA 2001:2:0:100::10, TXT "scrubber lab"; other types get an empty
# NOERROR answer. One UDP socket per address given; prints one line once all are bound.
# argv: PORT ADDR...
import select, socket, struct, sys

port, addrs = int(sys.argv[1]), sys.argv[2:]
ANSWERS = {
    1: socket.inet_pton(socket.AF_INET, "198.18.100.10"),
    28: socket.inet_pton(socket.AF_INET6, "2001:2:0:100::10"),
    16: bytes([12]) + b"scrubber lab",
}
socks = []
for a in addrs:
    s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a, port))
    socks.append(s)
print("dns responder: listening on", " ".join(addrs), "port", port, flush=True)


def answer(q):
    if len(q) < 12:
        return None
    ident, flags, qd = struct.unpack("!HHH", q[:6])
    # Queries only (QR=0), opcode QUERY, one question.
    if flags & 0x8000 or (flags >> 11) & 0xF or qd != 1:
        return None
    i = 12
    while i < len(q) and q[i] != 0:
        if q[i] & 0xC0:
            return None
        i += q[i] + 1
    end = i + 5
    if end > len(q):
        return None
    qtype, qclass = struct.unpack("!HH", q[i + 1 : end])
    rdata = ANSWERS.get(qtype) if qclass == 1 else None
    rr = b"" if rdata is None else struct.pack("!HHHIH", 0xC00C, qtype, 1, 60, len(rdata)) + rdata
    # QR, AA, RD copied, RA; NOERROR.
    out_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080
    return struct.pack("!HHHHHH", ident, out_flags, 1, 1 if rr else 0, 0, 0) + q[12:end] + rr


while True:
    ready, _, _ = select.select(socks, [], [])
    for s in ready:
        try:
            q, peer = s.recvfrom(4096)
        except OSError:
            continue
        r = answer(q)
        if r is not None:
            try:
                s.sendto(r, peer)
            except OSError:
                pass
