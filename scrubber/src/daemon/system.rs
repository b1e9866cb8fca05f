//! What the daemon learns from the system before it starts: privileges, AF_XDP support,
//! interfaces and their queues, MACs, the appliance's own addresses, the next hop's MAC.

use dataplane::addr::Addr;
use dataplane::xsk::sys;
use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A start-up problem, said plainly.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Root and AF_XDP are required.
pub fn preflight() -> Result<(), StartError> {
    if !sys::is_root() {
        return Err(StartError(
            "scrubber run needs root (or CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_SYS_ADMIN, CAP_IPC_LOCK)".into(),
        ));
    }
    if !sys::af_xdp_supported() {
        return Err(StartError("this kernel lacks AF_XDP sockets (CONFIG_XDP_SOCKETS)".into()));
    }
    Ok(())
}

/// Checks that `ifname` exists and has RX queue `queue`.
pub fn check_queue(ifname: &str, queue: u32) -> Result<(), StartError> {
    let dir = Path::new("/sys/class/net").join(ifname);
    if !dir.exists() {
        return Err(StartError(format!("interface {ifname} does not exist")));
    }
    let rx = dir.join("queues").join(format!("rx-{queue}"));
    if !rx.exists() {
        let count = std::fs::read_dir(dir.join("queues"))
            .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count())
            .unwrap_or(0);
        return Err(StartError(format!("interface {ifname} has no RX queue {queue} (it has {count})")));
    }
    Ok(())
}

/// Number of TX queues of `ifname`.
pub fn tx_queues(ifname: &str) -> usize {
    queues(ifname, "tx-")
}

/// RX queues of `ifname` (0 if it does not exist).
pub fn rx_queues(ifname: &str) -> usize {
    queues(ifname, "rx-")
}

fn queues(ifname: &str, prefix: &str) -> usize {
    std::fs::read_dir(Path::new("/sys/class/net").join(ifname).join("queues"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).count())
        .unwrap_or(0)
}

/// MAC address of `ifname`.
pub fn mac_of(ifname: &str) -> Result<[u8; 6], StartError> {
    let text = std::fs::read_to_string(Path::new("/sys/class/net").join(ifname).join("address"))
        .map_err(|e| StartError(format!("cannot read the MAC of {ifname}: {e}")))?;
    control::compile::parse_mac(text.trim()).ok_or_else(|| StartError(format!("{ifname} has no Ethernet MAC")))
}

/// Every address of every interface of this namespace.
pub fn own_addresses() -> Result<Vec<Addr>, StartError> {
    let list = sys::interface_addresses().map_err(|e| StartError(format!("cannot list interface addresses: {e}")))?;
    Ok(list.into_iter().map(|(_, a)| a).collect())
}

fn arp_lookup(ip: IpAddr) -> Option<[u8; 6]> {
    match ip {
        IpAddr::V4(v4) => {
            let table = std::fs::read_to_string("/proc/net/arp").ok()?;
            table.lines().skip(1).find_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                // IP address, HW type, Flags, HW address, Mask, Device; flag 0x2 = complete.
                (cols.len() >= 4 && cols[0] == v4.to_string() && cols[2] != "0x0")
                    .then(|| control::compile::parse_mac(cols[3]))
                    .flatten()
                    .filter(|m| *m != [0; 6])
            })
        }
        IpAddr::V6(v6) => {
            let out = Command::new("ip").args(["-6", "neigh", "show", "to", &v6.to_string()]).output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let words: Vec<&str> = text.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "lladdr")?;
            words.get(at + 1).and_then(|m| control::compile::parse_mac(m))
        }
    }
}

/// The MAC of `ip` from the kernel's neighbour table, prompting resolution if needed (one empty
/// UDP datagram to the discard port), waiting up to `wait`.
pub fn resolve_neighbour(ip: IpAddr, wait: Duration) -> Result<[u8; 6], StartError> {
    if let Some(mac) = arp_lookup(ip) {
        return Ok(mac);
    }
    let bind: IpAddr = if ip.is_ipv4() { [0, 0, 0, 0].into() } else { [0u16; 8].into() };
    if let Ok(sock) = UdpSocket::bind((bind, 0)) {
        let _ = sock.send_to(&[], (ip, 9));
    }
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(mac) = arp_lookup(ip) {
            return Ok(mac);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(StartError(format!("next hop {ip} did not resolve to a MAC within {wait:?} (set forward.next_hop_mac)")))
}

/// 256 bits from the kernel's random source (table hash keys an attacker must not know).
pub fn random_seed() -> Result<[u64; 4], StartError> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| StartError(format!("cannot read /dev/urandom: {e}")))?;
    let mut seed = [0u64; 4];
    for (s, chunk) in seed.iter_mut().zip(bytes.chunks_exact(8)) {
        *s = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    Ok(seed)
}

/// Runs `open` (binding AF_XDP sockets) again while it fails with EBUSY, for up to `wait`: the
/// kernel releases a closed socket's hold on its queue a moment after the process that had it
/// exits, so a restart (or the next generator) can find the queue still taken.
pub fn retry_busy<T, E: std::fmt::Display>(wait: Duration, mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + wait;
    loop {
        match open() {
            Err(e) if e.to_string().contains("os error 16") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}
