//! AF_XDP sockets over one UMEM per worker (xsk-rs), and the frame bookkeeping of a worker.
//!
//! An `Io` owns a UMEM, the ingress socket (RX + TX for replies) and optionally an egress socket
//! sharing the same UMEM, so forwarding a frame is a descriptor move from ingress RX to egress
//! TX. Frames cycle: free list → fill ring → (kernel) → RX → pipeline → TX ring or free list →
//! completion ring → free list. Rings are produced in chunks no larger than their free space
//! (xsk-rs produce is all-or-nothing); what a full TX ring cannot take is dropped and counted
//! (`tx_ring_full`), a capacity signal rather than silence. TX is kicked on every pass while
//! descriptors are outstanding, since copy-mode transmit sends only a small batch per kick.

use crate::frame::Frame;
use crate::xsk::prefetch;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use xsk_rs::config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// Most frames handled per batch.
pub const MAX_BATCH: usize = 256;

/// How to bind sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy if the driver supports it, else copy.
    Auto,
    /// Zero-copy or fail.
    ZeroCopy,
    /// Copy mode.
    Copy,
}

/// What memory backs a UMEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UmemPages {
    /// Huge pages when the kernel has enough reserved (`vm.nr_hugepages`), else small pages.
    Auto,
    /// Huge pages, or refuse to start.
    Huge,
    /// Small pages.
    Small,
}

/// Sizes and modes of one worker's sockets.
#[derive(Clone, Copy, Debug)]
pub struct XskSettings {
    /// UMEM frames.
    pub frames: u32,
    /// Bytes per UMEM frame (2048 or 4096).
    pub frame_size: u32,
    /// RX/TX ring entries.
    pub ring_size: u32,
    /// Fill/completion ring entries.
    pub fill_size: u32,
    /// Bind mode.
    pub bind: BindMode,
    /// Frames per RX batch (<= MAX_BATCH).
    pub batch: usize,
    /// Preferred busy polling with this budget (0: off): the kernel polls the NIC queue from the
    /// worker's own syscalls instead of interrupts (SO_PREFER_BUSY_POLL, SO_BUSY_POLL_BUDGET).
    pub busy_poll_budget: u32,
    /// UMEM memory: on huge pages a worker reading a frame rarely misses the TLB, where on
    /// small pages nearly every frame of a busy ring is a page of its own.
    pub pages: UmemPages,
}

/// An error setting up sockets.
#[derive(Debug)]
pub struct XskError(pub String);

impl std::fmt::Display for XskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for XskError {}

fn e(what: impl std::fmt::Display, cause: impl std::fmt::Display) -> XskError {
    XskError(format!("{what}: {cause}"))
}

/// The kernel's default huge page size (`Hugepagesize` in /proc/meminfo; 2 MiB on x86-64).
fn huge_page_size() -> u64 {
    crate::mem::proc_field("/proc/meminfo", "Hugepagesize:").map_or(crate::mem::HUGE_MIN as u64, |kib| kib * 1024)
}

/// Maps a UMEM of `frames` frames as `settings.pages` asks; returns whether it is on huge pages.
fn create_umem(
    config: UmemConfig,
    frames: NonZeroU32,
    settings: &XskSettings,
) -> Result<(Umem, Vec<FrameDesc>, bool), XskError> {
    let len = u64::from(frames.get()) * u64::from(settings.frame_size);
    let page = huge_page_size();
    // A hugetlb mapping is unmapped in whole huge pages only.
    let fits = len.is_multiple_of(page);
    let small = || Umem::new(config, frames, false).map_err(|err| e("creating the UMEM", describe(&err)));
    match settings.pages {
        UmemPages::Small => small().map(|(u, d)| (u, d, false)),
        UmemPages::Auto => match fits.then(|| Umem::new(config, frames, true)) {
            Some(Ok((u, d))) => Ok((u, d, true)),
            _ => small().map(|(u, d)| (u, d, false)),
        },
        UmemPages::Huge if !fits => Err(XskError(format!(
            "umem_pages = \"huge\" needs dataplane.frames x dataplane.frame_size ({len} bytes) to be a multiple \
             of the huge page size ({page} bytes): change them, or use umem_pages = \"auto\""
        ))),
        UmemPages::Huge => Umem::new(config, frames, true).map(|(u, d)| (u, d, true)).map_err(|err| {
            e(
                format_args!(
                    "creating the UMEM on {} huge pages (reserve them: sysctl vm.nr_hugepages, {} pages of {} KiB free now)",
                    len / page,
                    crate::mem::proc_field("/proc/meminfo", "HugePages_Free:").unwrap_or(0),
                    page / 1024
                ),
                describe(&err),
            )
        }),
    }
}

/// One bound socket.
struct Port {
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    comp: CompQueue,
    zero_copy: bool,
    /// Produced to TX and not yet completed.
    outstanding: u32,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port").field("zero_copy", &self.zero_copy).field("outstanding", &self.outstanding).finish()
    }
}

fn open_port(umem: &Umem, s: &XskSettings, ifname: &str, queue: u32) -> Result<Port, XskError> {
    let iface: Interface = ifname.parse().map_err(|err| e(format!("interface name {ifname:?}"), err))?;
    let q = |n: u32| QueueSize::new(n).map_err(|err| e("ring size", err));
    let attempt = |zero_copy: bool| -> Result<Port, XskError> {
        let mode = if zero_copy { BindFlags::XDP_ZEROCOPY } else { BindFlags::XDP_COPY };
        let config = SocketConfig::builder()
            .rx_queue_size(q(s.ring_size)?)
            .tx_queue_size(q(s.ring_size)?)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .xdp_flags(XdpFlags::empty())
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP | mode)
            .build();
        // SAFETY: the program-load inhibit flag is set (we attach our own program), as xsk-rs
        // requires when a UMEM is shared between sockets.
        let (tx, rx, rings) = unsafe { Socket::new(config, umem, &iface, queue) }
            .map_err(|err| e(format!("binding an AF_XDP socket to {ifname} queue {queue}"), describe(&err)))?;
        let (fill, comp) =
            rings.ok_or_else(|| XskError(format!("{ifname} queue {queue} is already bound by this worker")))?;
        Ok(Port { tx, rx, fill, comp, zero_copy, outstanding: 0 })
    };
    match s.bind {
        BindMode::ZeroCopy => attempt(true),
        BindMode::Copy => attempt(false),
        BindMode::Auto => attempt(true).or_else(|_| attempt(false)),
    }
}

fn describe(err: &dyn std::error::Error) -> String {
    match err.source() {
        Some(src) => format!("{err} ({src})"),
        None => err.to_string(),
    }
}

/// Kernel ring statistics of one socket (XDP_STATISTICS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Frames the kernel dropped for lack of room (rx_dropped).
    pub rx_dropped: u64,
    /// Invalid RX descriptors.
    pub rx_invalid: u64,
    /// RX ring full.
    pub rx_ring_full: u64,
    /// Fill ring empty when the kernel wanted a frame.
    pub fill_ring_empty: u64,
    /// Invalid TX descriptors.
    pub tx_invalid: u64,
    /// TX ring empty when the kernel looked.
    pub tx_ring_empty: u64,
}

fn ring_stats(tx: &TxQueue) -> RingStats {
    match tx.fd().xdp_statistics() {
        Ok(s) => RingStats {
            rx_dropped: s.rx_dropped(),
            rx_invalid: s.rx_invalid_descs(),
            rx_ring_full: s.rx_ring_full(),
            fill_ring_empty: s.rx_fill_ring_empty_descs(),
            tx_invalid: s.tx_invalid_descs(),
            tx_ring_empty: s.tx_ring_empty_descs(),
        },
        Err(_) => RingStats::default(),
    }
}

/// Where a decided frame goes, relative to the side it was received on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// On to the other side: a frame from ingress leaves by egress (by ingress again when there
    /// is no egress socket: hairpin); a frame from egress (the return direction) by ingress.
    Onward,
    /// Back out of the port it came in by (replies).
    Back,
    /// Back to the free list.
    Free,
}

/// Which socket a batch was received on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The ingress socket: client → origin traffic to scrub.
    Ingress,
    /// The egress socket, in symmetric deployments: origin → client traffic to relay.
    Egress,
}

/// Counters of the I/O layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Frames received.
    pub rx: u64,
    /// Frames sent on egress.
    pub tx_egress: u64,
    /// Frames sent on ingress (replies, hairpin).
    pub tx_ingress: u64,
    /// Frames dropped because a TX ring was full.
    pub tx_ring_full: u64,
    /// Frames whose rewritten bytes no longer fit the frame (dropped).
    pub relocate_failed: u64,
    /// TX wakeups issued.
    pub tx_kicks: u64,
    /// Fill ring wakeups issued.
    pub fill_kicks: u64,
    /// Frames received on the egress socket (return direction, symmetric deployments).
    pub rx_return: u64,
}

/// A worker's UMEM and sockets. See the module docs.
pub struct Io {
    // Ports hold references into the UMEM's rings: declared first so they drop first.
    ingress: Port,
    egress: Option<Port>,
    umem: Umem,
    frame_size: usize,
    batch: usize,
    free: Vec<FrameDesc>,
    rx: Vec<FrameDesc>,
    to_ingress: Vec<FrameDesc>,
    to_egress: Vec<FrameDesc>,
    scratch: Vec<FrameDesc>,
    counters: IoCounters,
    /// The egress socket also receives (symmetric deployments).
    return_path: bool,
    /// The side `rx` was last filled from.
    rx_side: Side,
    /// The UMEM is on huge pages.
    huge_pages: bool,
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("ingress", &self.ingress)
            .field("egress", &self.egress)
            .field("free", &self.free.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl Io {
    /// Creates the UMEM and binds the ingress socket (and the egress one, sharing the UMEM). With
    /// `return_path` the egress socket also receives (the origin → client direction).
    pub fn open(
        settings: &XskSettings,
        ingress: (&str, u32),
        egress: Option<(&str, u32)>,
        return_path: bool,
    ) -> Result<Io, XskError> {
        let config = UmemConfig::builder()
            .frame_size(FrameSize::new(settings.frame_size).map_err(|err| e("frame size", err))?)
            .fill_queue_size(QueueSize::new(settings.fill_size).map_err(|err| e("fill ring size", err))?)
            .comp_queue_size(QueueSize::new(settings.fill_size).map_err(|err| e("completion ring size", err))?)
            .frame_headroom(0)
            .build()
            .map_err(|err| e("UMEM layout", err))?;
        let frames = NonZeroU32::new(settings.frames).ok_or_else(|| XskError("zero UMEM frames".into()))?;
        let (umem, descs, huge_pages) = create_umem(config, frames, settings)?;
        let ingress_port = open_port(&umem, settings, ingress.0, ingress.1)?;
        let egress_port = match egress {
            Some((ifname, queue)) => Some(open_port(&umem, settings, ifname, queue)?),
            None => None,
        };
        let batch = settings.batch.clamp(1, MAX_BATCH);
        if settings.busy_poll_budget > 0 {
            for fd in std::iter::once(ingress_port.rx.fd().as_raw_fd())
                .chain(egress_port.as_ref().map(|p| p.rx.fd().as_raw_fd()))
            {
                set_busy_poll(fd, settings.busy_poll_budget)?;
            }
        }
        let mut io = Io {
            ingress: ingress_port,
            egress: egress_port,
            umem,
            frame_size: settings.frame_size as usize,
            batch,
            free: descs,
            rx: vec![FrameDesc::default(); MAX_BATCH],
            to_ingress: Vec::with_capacity(MAX_BATCH),
            to_egress: Vec::with_capacity(MAX_BATCH),
            scratch: vec![FrameDesc::default(); MAX_BATCH],
            counters: IoCounters::default(),
            return_path: return_path && egress.is_some(),
            rx_side: Side::Ingress,
            huge_pages,
        };
        io.refill();
        Ok(io)
    }

    /// File descriptor of the ingress socket (to register in the XSKMAP).
    pub fn ingress_fd(&self) -> RawFd {
        self.ingress.rx.fd().as_raw_fd()
    }

    /// File descriptor of the egress socket, if any (to register for the return direction).
    pub fn egress_fd(&self) -> Option<RawFd> {
        self.egress.as_ref().map(|p| p.rx.fd().as_raw_fd())
    }

    /// True when the ingress socket is bound in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.ingress.zero_copy
    }

    /// True when the UMEM is on huge pages.
    pub fn huge_pages(&self) -> bool {
        self.huge_pages
    }

    /// Counters so far.
    pub fn counters(&self) -> IoCounters {
        self.counters
    }

    /// Kernel ring statistics of the ingress and egress sockets.
    pub fn ring_stats(&self) -> (RingStats, Option<RingStats>) {
        (ring_stats(&self.ingress.tx), self.egress.as_ref().map(|p| ring_stats(&p.tx)))
    }

    /// Moves free frames to the fill rings: ingress first, then the egress socket's when it
    /// receives the return direction.
    pub fn refill(&mut self) {
        fill_port(&mut self.ingress, &mut self.free);
        if self.return_path
            && let Some(egress) = self.egress.as_mut()
        {
            fill_port(egress, &mut self.free);
        }
    }

    /// True when the egress socket receives too (symmetric deployments).
    pub fn return_path(&self) -> bool {
        self.return_path
    }

    /// Moves completed TX frames back to the free list.
    pub fn reclaim(&mut self) {
        for port in std::iter::once(&mut self.ingress).chain(self.egress.as_mut()) {
            // SAFETY: completion descriptors belong to this worker's UMEM (both sockets share it).
            let n = unsafe { port.comp.consume(&mut self.scratch) };
            port.outstanding = port.outstanding.saturating_sub(n as u32);
            self.free.extend_from_slice(&self.scratch[..n]);
        }
    }

    /// Receives up to one batch from `side`'s socket; returns how many frames arrived.
    pub fn receive(&mut self, side: Side) -> usize {
        let port = match side {
            Side::Ingress => &mut self.ingress,
            Side::Egress => match self.egress.as_mut() {
                Some(p) if self.return_path => p,
                _ => return 0,
            },
        };
        self.rx_side = side;
        // SAFETY: the RX descriptors are for this worker's UMEM.
        let n = unsafe { port.rx.consume(&mut self.rx[..self.batch]) };
        match side {
            Side::Ingress => self.counters.rx += n as u64,
            Side::Egress => self.counters.rx_return += n as u64,
        }
        // In copy mode the kernel wrote these frames on another core (on veth, the sender's):
        // the pipeline's first read of each one misses the cache. Asking for all their first
        // lines now lets those misses overlap instead of stalling once per frame.
        for desc in &self.rx[..n] {
            // SAFETY: the descriptor came from this UMEM's RX ring and is in no ring now.
            let data = unsafe { self.umem.data(desc) };
            prefetch(data.contents().as_ptr());
        }
        n
    }

    /// Waits up to `timeout_ms` for frames on the ingress socket (and the egress one when it
    /// receives) (idle path).
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<bool> {
        let mut fds = [
            libc::pollfd { fd: self.ingress.rx.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 },
        ];
        if self.return_path
            && let Some(egress) = self.egress.as_ref()
        {
            fds[1].fd = egress.rx.fd().as_raw_fd();
        }
        // SAFETY: `fds` is a valid array of two pollfd structs for the duration of the call;
        // a negative fd is ignored by poll(2).
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc > 0) }
    }

    /// Frames of the first `n` received descriptors, as the pipeline sees them: each one spans its
    /// whole UMEM chunk and starts where the kernel put the packet.
    pub fn frames(&mut self, n: usize) -> [Frame<'_>; MAX_BATCH] {
        let mut out: [Frame<'_>; MAX_BATCH] = std::array::from_fn(|_| Frame::new(Default::default(), 0, 0));
        let frame_size = self.frame_size;
        let umem = &self.umem;
        for (slot, desc) in out.iter_mut().zip(self.rx[..n].iter_mut()) {
            let addr = desc.addr();
            let len = desc.lengths().data();
            let offset = addr % frame_size;
            // SAFETY: `desc` came from this UMEM's RX ring and is in no ring now, so its chunk is
            // ours alone until it is produced again.
            let start = unsafe { umem.data_mut(desc) }.contents_mut().as_mut_ptr();
            // SAFETY: in aligned mode every descriptor lies inside one `frame_size` chunk that
            // starts `offset` bytes before it; distinct descriptors have distinct chunks, so the
            // slices never alias, and they live no longer than the borrow of `self`.
            let chunk = unsafe { std::slice::from_raw_parts_mut(start.sub(offset), frame_size) };
            *slot = Frame::new(chunk, offset, len);
        }
        out
    }

    /// Routes the first `n` received frames after the pipeline: `lens[i]` is the frame's new
    /// length (its start is back where it was received), `dest[i]` where it goes.
    pub fn dispatch(&mut self, n: usize, lens: &[usize], dest: &[Dest]) {
        let hairpin = self.egress.is_none();
        let from_egress = self.rx_side == Side::Egress;
        for i in 0..n {
            let mut desc = self.rx[i];
            match dest[i] {
                Dest::Free => self.free.push(desc),
                d => {
                    // SAFETY: the descriptor is ours (not in any ring) and belongs to this UMEM.
                    unsafe { self.umem.data_mut(&mut desc) }.cursor().set_pos(lens[i]);
                    // Onward from ingress and back from egress both leave by egress.
                    let by_egress = !hairpin && ((d == Dest::Onward) != from_egress);
                    if by_egress {
                        self.to_egress.push(desc);
                    } else {
                        self.to_ingress.push(desc);
                    }
                }
            }
        }
        let c = &mut self.counters;
        let sent = transmit(&mut self.ingress, &mut self.to_ingress, &mut self.free, c);
        c.tx_ingress += sent as u64;
        if let Some(egress) = self.egress.as_mut() {
            let sent = transmit(egress, &mut self.to_egress, &mut self.free, c);
            c.tx_egress += sent as u64;
        }
    }

    /// Counts frames the worker could not hand back (their rewrite did not fit).
    pub fn count_relocate_failed(&mut self, n: u64) {
        self.counters.relocate_failed += n;
    }

    /// Kicks TX while anything is outstanding and the fill ring if the kernel asks.
    pub fn kick(&mut self) {
        for port in std::iter::once(&mut self.ingress).chain(self.egress.as_mut()) {
            if port.outstanding > 0 && (port.tx.needs_wakeup() || !port.zero_copy) {
                // Errors here are transient (ENOBUFS, EAGAIN, EBUSY): the next pass retries.
                let _ = port.tx.wakeup();
                self.counters.tx_kicks += 1;
            }
        }
        if self.ingress.fill.needs_wakeup() {
            let _ = self.ingress.fill.wakeup(self.ingress.rx.fd_mut(), 0);
            self.counters.fill_kicks += 1;
        }
        if self.return_path
            && let Some(egress) = self.egress.as_mut()
            && egress.fill.needs_wakeup()
        {
            let _ = egress.fill.wakeup(egress.rx.fd_mut(), 0);
            self.counters.fill_kicks += 1;
        }
    }

    /// Descriptors produced to TX rings and not yet completed.
    pub fn outstanding(&self) -> u32 {
        self.ingress.outstanding + self.egress.as_ref().map_or(0, |p| p.outstanding)
    }
}

/// Preferred busy polling on socket `fd` (kernel 5.11+).
fn set_busy_poll(fd: RawFd, budget: u32) -> Result<(), XskError> {
    // SO_PREFER_BUSY_POLL (69) and SO_BUSY_POLL_BUDGET (70) from asm-generic/socket.h.
    const SO_PREFER_BUSY_POLL: libc::c_int = 69;
    const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
    for (opt, value, name) in [
        (SO_PREFER_BUSY_POLL, 1i32, "SO_PREFER_BUSY_POLL"),
        (libc::SO_BUSY_POLL, 20, "SO_BUSY_POLL"),
        (SO_BUSY_POLL_BUDGET, budget as i32, "SO_BUSY_POLL_BUDGET"),
    ] {
        // SAFETY: `value` is a valid c_int for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&value as *const i32).cast(),
                size_of::<i32>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(e(format!("setting {name} for preferred busy polling"), io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn fill_port(port: &mut Port, free: &mut Vec<FrameDesc>) {
    if free.is_empty() {
        return;
    }
    let room = port.fill.nb_free(free.len() as u32) as usize;
    let n = room.min(free.len());
    if n == 0 {
        return;
    }
    let from = free.len() - n;
    // SAFETY: free descriptors belong to this UMEM and are in no ring.
    let produced = unsafe { port.fill.produce(&free[from..]) };
    if produced == n {
        free.truncate(from);
    }
}

/// Produces `queue` to the port's TX ring in chunks that fit; frames that do not fit are counted
/// and freed. Returns how many were produced.
fn transmit(port: &mut Port, queue: &mut Vec<FrameDesc>, free: &mut Vec<FrameDesc>, c: &mut IoCounters) -> usize {
    if queue.is_empty() {
        return 0;
    }
    let room = port.tx.nb_free(queue.len() as u32) as usize;
    let n = room.min(queue.len());
    let mut produced = 0;
    if n > 0 {
        // SAFETY: the descriptors belong to this UMEM and are in no ring.
        produced = unsafe { port.tx.produce(&queue[..n]) };
    }
    port.outstanding += produced as u32;
    if produced < queue.len() {
        c.tx_ring_full += (queue.len() - produced) as u64;
        free.extend_from_slice(&queue[produced..]);
    }
    queue.clear();
    produced
}

/// A transmit-only socket that replays pre-built frames (the traffic generator).
///
/// Frames are written into the UMEM once by `load`; `send` produces the next ones in order,
/// cycling, and completions make a frame available again. No copy per packet.
pub struct Transmitter {
    port: Port,
    umem: Umem,
    frame_size: usize,
    loaded: Vec<FrameDesc>,
    available: std::collections::VecDeque<u32>,
    batch: Vec<FrameDesc>,
    scratch: Vec<FrameDesc>,
    sent: u64,
}

impl std::fmt::Debug for Transmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmitter").field("port", &self.port).field("loaded", &self.loaded.len()).finish()
    }
}

impl Transmitter {
    /// Creates a UMEM and binds a socket to `ifname` queue `queue` for transmitting.
    pub fn open(settings: &XskSettings, ifname: &str, queue: u32) -> Result<Transmitter, XskError> {
        let config = UmemConfig::builder()
            .frame_size(FrameSize::new(settings.frame_size).map_err(|err| e("frame size", err))?)
            .fill_queue_size(QueueSize::new(settings.fill_size).map_err(|err| e("fill ring size", err))?)
            .comp_queue_size(QueueSize::new(settings.fill_size).map_err(|err| e("completion ring size", err))?)
            .frame_headroom(0)
            .build()
            .map_err(|err| e("UMEM layout", err))?;
        let frames = NonZeroU32::new(settings.frames).ok_or_else(|| XskError("zero UMEM frames".into()))?;
        let (umem, descs, _) = create_umem(config, frames, settings)?;
        let port = open_port(&umem, settings, ifname, queue)?;
        Ok(Transmitter {
            port,
            umem,
            frame_size: settings.frame_size as usize,
            loaded: descs,
            available: std::collections::VecDeque::new(),
            batch: Vec::with_capacity(MAX_BATCH),
            scratch: vec![FrameDesc::default(); MAX_BATCH],
            sent: 0,
        })
    }

    /// Writes `frames` into the UMEM (as many as it holds); returns how many were loaded.
    pub fn load(&mut self, frames: &[Vec<u8>]) -> usize {
        let n = frames.len().min(self.loaded.len());
        let mtu = self.frame_size.saturating_sub(256);
        let mut count = 0;
        for (desc, bytes) in self.loaded.iter_mut().zip(frames).take(n) {
            if bytes.len() > mtu {
                continue;
            }
            // SAFETY: the descriptor belongs to this UMEM and is in no ring yet.
            let mut data = unsafe { self.umem.data_mut(desc) };
            let mut cursor = data.cursor();
            cursor.set_pos(0);
            let _ = std::io::Write::write_all(&mut cursor, bytes);
            count += 1;
        }
        self.loaded.truncate(n);
        self.available = (0..self.loaded.len() as u32).collect();
        count
    }

    /// Produces up to `max` frames; returns how many the TX ring took.
    pub fn send(&mut self, max: usize) -> usize {
        let want = max.min(MAX_BATCH).min(self.available.len());
        if want == 0 {
            return 0;
        }
        let room = self.port.tx.nb_free(want as u32) as usize;
        let n = room.min(want);
        self.batch.clear();
        for _ in 0..n {
            let i = self.available.pop_front().expect("n <= available") as usize;
            self.batch.push(self.loaded[i]);
        }
        // SAFETY: the descriptors belong to this UMEM and are in no ring.
        let produced = unsafe { self.port.tx.produce(&self.batch) };
        // produce is all-or-nothing; on failure the frames stay available.
        if produced == 0 {
            for d in self.batch.iter().rev() {
                self.available.push_front((d.addr() / self.frame_size) as u32);
            }
        }
        self.port.outstanding += produced as u32;
        self.sent += produced as u64;
        produced
    }

    /// Makes completed frames available again.
    pub fn reclaim(&mut self) {
        // SAFETY: completion descriptors belong to this UMEM.
        let n = unsafe { self.port.comp.consume(&mut self.scratch) };
        self.port.outstanding = self.port.outstanding.saturating_sub(n as u32);
        for d in &self.scratch[..n] {
            self.available.push_back((d.addr() / self.frame_size) as u32);
        }
    }

    /// Kicks the kernel while frames are outstanding.
    pub fn kick(&mut self) {
        if self.port.outstanding > 0 {
            let _ = self.port.tx.wakeup();
        }
    }

    /// Frames produced so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Frames produced and not completed.
    pub fn outstanding(&self) -> u32 {
        self.port.outstanding
    }

    /// Kernel ring statistics.
    pub fn ring_stats(&self) -> RingStats {
        ring_stats(&self.port.tx)
    }
}
