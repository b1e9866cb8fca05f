//! The XDP program: load, attach (or take over), keep its maps in sync, detach.
//!
//! `XdpProgram::attach` loads the embedded object (`bpf/scrubber_xdp.c`). If the interface
//! already runs a program named `scrubber_xdp` with the same instructions (a daemon that crashed
//! or was killed), it takes that one over with its maps, so traffic never stops being steered. A
//! scrubber program of another build is replaced atomically (`XDP_FLAGS_REPLACE`); a foreign
//! program is never touched: attach fails and names it. Attachment is through netlink, so the
//! program outlives the daemon; only `detach` (clean shutdown) removes it.

use crate::addr::Cidr;
use libbpf_sys as bpf;
use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/scrubber_xdp.o"));
/// The program's name, by which an attached one is recognised as a scrubber's.
pub const PROG_NAME: &str = "scrubber_xdp";

/// Entries of each of the program's prefix maps (IPv4, IPv6): the protected prefixes of that
/// family plus the appliance's own addresses. `MAX_PREFIXES` in `bpf/scrubber_xdp.c`; the
/// compiler refuses a policy with more, as the map would refuse the rest and their traffic
/// would stay in the kernel.
pub const MAX_XDP_PREFIXES: usize = 65_536;

/// How to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native if the driver supports it, else generic.
    Auto,
    /// Driver (native) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// The mode a program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// Driver mode.
    Native,
    /// Generic mode.
    Generic,
}

impl Attached {
    /// The attach flag that asks for this mode.
    fn flags(self) -> u32 {
        match self {
            Attached::Native => bpf::XDP_FLAGS_DRV_MODE,
            Attached::Generic => bpf::XDP_FLAGS_SKB_MODE,
        }
    }
}

impl fmt::Display for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Attached::Native => "native",
            Attached::Generic => "generic",
        })
    }
}

/// Class of a prefix in the program's maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Class {
    /// Redirect to the queue's socket.
    Protected = 1,
    /// Hand to the kernel (the appliance's own addresses).
    Local = 2,
}

/// What the program counted (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgCounters {
    /// Non-IP frames passed to the kernel.
    pub not_ip: u64,
    /// Frames for the appliance's own addresses passed to the kernel.
    pub local: u64,
    /// Frames for unprotected destinations passed to the kernel.
    pub unprotected: u64,
    /// Frames redirected to a socket.
    pub redirected: u64,
    /// Protected frames with no socket on their queue (fail mode applied).
    pub no_socket: u64,
    /// IP frames too short for their header, dropped.
    pub malformed: u64,
}

/// An error from loading, attaching or updating the program.
#[derive(Debug)]
pub struct XdpError {
    /// What was being done.
    pub what: String,
    /// The OS error, if any.
    pub source: Option<std::io::Error>,
}

impl fmt::Display for XdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {e}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

impl std::error::Error for XdpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

fn err(what: impl Into<String>, code: i32) -> XdpError {
    let errno = if code < 0 { -code } else { std::io::Error::last_os_error().raw_os_error().unwrap_or(0) };
    XdpError { what: what.into(), source: (errno != 0).then(|| std::io::Error::from_raw_os_error(errno)) }
}

/// `struct config` of the program.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ProgConfig {
    fail_action: u32,
    match_source: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
struct KeyV4 {
    prefixlen: u32,
    addr: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
struct KeyV6 {
    prefixlen: u32,
    addr: [u8; 16],
}

/// The maps of the program, by name.
#[derive(Debug)]
struct Maps {
    xsks: OwnedFd,
    class_v4: OwnedFd,
    class_v6: OwnedFd,
    cfg: OwnedFd,
    counters: OwnedFd,
}

/// A program attached to one interface. See the module docs.
#[derive(Debug)]
pub struct XdpProgram {
    ifname: String,
    ifindex: u32,
    prog: OwnedFd,
    maps: Maps,
    mode: Attached,
    taken_over: bool,
}

/// Interface index of `name`, or an error naming it.
pub fn ifindex(name: &str) -> Result<u32, XdpError> {
    let c = CString::new(name).map_err(|_| XdpError { what: format!("bad interface name {name:?}"), source: None })?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(XdpError {
            what: format!("interface {name} does not exist"),
            source: Some(std::io::Error::last_os_error()),
        });
    }
    Ok(index)
}

fn owned(fd: i32, what: &str) -> Result<OwnedFd, XdpError> {
    if fd < 0 {
        return Err(err(what, fd));
    }
    // SAFETY: `fd` is a fresh descriptor returned by libbpf that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn c_name(bytes: &[std::os::raw::c_char; 16]) -> String {
    bytes.iter().take_while(|&&c| c != 0).map(|&c| c as u8 as char).collect()
}

fn prog_info(fd: RawFd, map_ids: &mut [u32]) -> Result<bpf::bpf_prog_info, XdpError> {
    let mut info = bpf::bpf_prog_info {
        nr_map_ids: map_ids.len() as u32,
        map_ids: map_ids.as_mut_ptr() as u64,
        ..Default::default()
    };
    let mut len = size_of::<bpf::bpf_prog_info>() as u32;
    // SAFETY: `info` is a valid bpf_prog_info of `len` bytes; `map_ids` has room for `nr_map_ids` ids
    // and outlives the call.
    let rc = unsafe { bpf::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) };
    if rc != 0 {
        return Err(err("reading program info", rc));
    }
    Ok(info)
}

fn map_name(fd: RawFd) -> Result<String, XdpError> {
    let mut info = bpf::bpf_map_info::default();
    let mut len = size_of::<bpf::bpf_map_info>() as u32;
    // SAFETY: `info` is a valid bpf_map_info of `len` bytes.
    let rc = unsafe { bpf::bpf_map_get_info_by_fd(fd, &mut info, &mut len) };
    if rc != 0 {
        return Err(err("reading map info", rc));
    }
    Ok(c_name(&info.name))
}

/// Maps of an attached program, found through its map ids.
fn maps_of(prog: RawFd) -> Result<Maps, XdpError> {
    let mut ids = [0u32; 16];
    let info = prog_info(prog, &mut ids)?;
    let mut found: [Option<OwnedFd>; 5] = Default::default();
    for &id in &ids[..(info.nr_map_ids as usize).min(ids.len())] {
        // SAFETY: plain syscall wrapper; the id came from the kernel.
        let fd = owned(unsafe { bpf::bpf_map_get_fd_by_id(id) }, "opening a map of the attached program")?;
        let slot = match map_name(fd.as_raw_fd())?.as_str() {
            "xsks" => 0,
            "class_v4" => 1,
            "class_v6" => 2,
            "cfg" => 3,
            "counters" => 4,
            _ => continue,
        };
        found[slot] = Some(fd);
    }
    let [Some(xsks), Some(class_v4), Some(class_v6), Some(cfg), Some(counters)] = found else {
        return Err(XdpError { what: "the attached scrubber program lacks one of its maps".into(), source: None });
    };
    Ok(Maps { xsks, class_v4, class_v6, cfg, counters })
}

/// A freshly loaded object: program and map descriptors (dup'd, so the object can be closed).
fn load_object() -> Result<(OwnedFd, Maps), XdpError> {
    // SAFETY: OBJECT is a valid, immutable byte slice for the whole program; libbpf copies it.
    let obj = unsafe { bpf::bpf_object__open_mem(OBJECT.as_ptr().cast(), OBJECT.len() as _, std::ptr::null()) };
    if obj.is_null() {
        return Err(err("opening the embedded XDP object", 0));
    }
    struct Object(*mut bpf::bpf_object);
    impl Drop for Object {
        fn drop(&mut self) {
            // SAFETY: the pointer came from bpf_object__open_mem and is closed once, here.
            unsafe { bpf::bpf_object__close(self.0) }
        }
    }
    let obj = Object(obj);
    // SAFETY: `obj.0` is a valid open object.
    let rc = unsafe { bpf::bpf_object__load(obj.0) };
    if rc != 0 {
        return Err(err("loading the XDP program into the kernel (is BPF enabled, and are we root?)", rc));
    }
    let dup = |fd: i32, what: &str| -> Result<OwnedFd, XdpError> {
        if fd < 0 {
            return Err(err(what, fd));
        }
        // SAFETY: `fd` is owned by the object, which is still open; dup gives us our own copy.
        owned(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) }, what)
    };
    let name = CString::new(PROG_NAME).expect("no NUL");
    // SAFETY: `obj.0` is valid and `name` is NUL-terminated.
    let prog = unsafe { bpf::bpf_object__find_program_by_name(obj.0, name.as_ptr()) };
    if prog.is_null() {
        return Err(XdpError { what: "the embedded object has no scrubber_xdp program".into(), source: None });
    }
    // SAFETY: `prog` belongs to the loaded object.
    let prog_fd = dup(unsafe { bpf::bpf_program__fd(prog) }, "program descriptor")?;
    let map = |n: &str| -> Result<OwnedFd, XdpError> {
        let c = CString::new(n).expect("no NUL");
        // SAFETY: `obj.0` is valid and `c` is NUL-terminated.
        dup(unsafe { bpf::bpf_object__find_map_fd_by_name(obj.0, c.as_ptr()) }, n)
    };
    let maps = Maps {
        xsks: map("xsks")?,
        class_v4: map("class_v4")?,
        class_v6: map("class_v6")?,
        cfg: map("cfg")?,
        counters: map("counters")?,
    };
    Ok((prog_fd, maps))
}

/// The XDP program attached to an interface.
struct Present {
    id: u32,
    prog: OwnedFd,
    info: bpf::bpf_prog_info,
    mode: Attached,
}

impl Present {
    fn name(&self) -> String {
        c_name(&self.info.name)
    }
}

/// The program attached to interface `ifindex`, if any.
fn present(ifindex: u32) -> Result<Option<Present>, XdpError> {
    let mut opts = bpf::bpf_xdp_query_opts { sz: size_of::<bpf::bpf_xdp_query_opts>() as _, ..Default::default() };
    // SAFETY: `opts` is a valid, sized options struct.
    let rc = unsafe { bpf::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if rc != 0 {
        return Err(err("querying the interface's XDP program", rc));
    }
    let id = opts.prog_id;
    if id == 0 {
        return Ok(None);
    }
    // SAFETY: plain syscall wrapper.
    let prog = owned(unsafe { bpf::bpf_prog_get_fd_by_id(id) }, "opening the attached program")?;
    let info = prog_info(prog.as_raw_fd(), &mut [])?;
    Ok(Some(Present { id, prog, info, mode: mode_of(opts.attach_mode) }))
}

/// Detaches the scrubber program attached to `ifname`, if that is what is attached there (the
/// same rule as `XdpProgram::attach`, which takes over a scrubber program on an ingress
/// interface: one daemon owns the interfaces its config names). Returns the detached program's
/// id; `None` when there is no program or another program, left as it is.
///
/// Whether a process still uses it cannot be read from the program: its socket map answers no
/// lookups from user space, and every index reads as a key.
pub fn detach_scrubber_program(ifname: &str) -> Result<Option<u32>, XdpError> {
    let ifindex = ifindex(ifname)?;
    match present(ifindex)? {
        Some(p) if p.name() == PROG_NAME => {
            detach(ifindex, ifname, &p.prog, p.mode)?;
            Ok(Some(p.id))
        }
        _ => Ok(None),
    }
}

/// Detaches `prog` from interface `ifindex` (`ifname`), attached in `mode`; only if it is still
/// the program attached there.
fn detach(ifindex: u32, ifname: &str, prog: &OwnedFd, mode: Attached) -> Result<(), XdpError> {
    let opts = bpf::bpf_xdp_attach_opts {
        sz: size_of::<bpf::bpf_xdp_attach_opts>() as _,
        old_prog_fd: prog.as_raw_fd(),
        ..Default::default()
    };
    // SAFETY: valid descriptor and sized options; XDP_FLAGS_REPLACE makes it a no-op unless
    // `prog` is the attached program.
    let rc = unsafe { bpf::bpf_xdp_detach(ifindex as i32, mode.flags() | bpf::XDP_FLAGS_REPLACE, &opts) };
    if rc != 0 {
        return Err(err(format!("detaching from {ifname}"), rc));
    }
    Ok(())
}

fn mode_of(attach_mode: u8) -> Attached {
    if u32::from(attach_mode) == bpf::XDP_ATTACHED_SKB { Attached::Generic } else { Attached::Native }
}

impl XdpProgram {
    /// Loads and attaches the program to `ifname`, or takes over the one already there.
    pub fn attach(ifname: &str, mode: AttachMode) -> Result<XdpProgram, XdpError> {
        let ifindex = ifindex(ifname)?;
        let (new_prog, new_maps) = load_object()?;
        let new_tag = prog_info(new_prog.as_raw_fd(), &mut [])?.tag;

        if let Some(old) = present(ifindex)? {
            let name = old.name();
            if name != PROG_NAME {
                return Err(XdpError {
                    what: format!(
                        "{ifname} already runs XDP program {} ({name}); not replacing a program scrubber did not load",
                        old.id
                    ),
                    source: None,
                });
            }
            if old.info.tag == new_tag {
                let maps = maps_of(old.prog.as_raw_fd())?;
                return Ok(XdpProgram {
                    ifname: ifname.to_string(),
                    ifindex,
                    prog: old.prog,
                    maps,
                    mode: old.mode,
                    taken_over: true,
                });
            }
            // Another build of scrubber's program: replace it in one step.
            let opts = bpf::bpf_xdp_attach_opts {
                sz: size_of::<bpf::bpf_xdp_attach_opts>() as _,
                old_prog_fd: old.prog.as_raw_fd(),
                ..Default::default()
            };
            let flags = bpf::XDP_FLAGS_REPLACE | old.mode.flags();
            // SAFETY: valid descriptors and a sized options struct.
            let rc = unsafe { bpf::bpf_xdp_attach(ifindex as i32, new_prog.as_raw_fd(), flags, &opts) };
            if rc != 0 {
                return Err(err(format!("replacing the previous scrubber program on {ifname}"), rc));
            }
            return Ok(XdpProgram {
                ifname: ifname.to_string(),
                ifindex,
                prog: new_prog,
                maps: new_maps,
                mode: old.mode,
                taken_over: false,
            });
        }

        let try_mode = |m: Attached| -> i32 {
            let flags = bpf::XDP_FLAGS_UPDATE_IF_NOEXIST | m.flags();
            // SAFETY: valid program descriptor; null options are allowed.
            unsafe { bpf::bpf_xdp_attach(ifindex as i32, new_prog.as_raw_fd(), flags, std::ptr::null()) }
        };
        let attached = match mode {
            AttachMode::Native => match try_mode(Attached::Native) {
                0 => Attached::Native,
                rc => return Err(err(format!("attaching to {ifname} in native mode"), rc)),
            },
            AttachMode::Generic => match try_mode(Attached::Generic) {
                0 => Attached::Generic,
                rc => return Err(err(format!("attaching to {ifname} in generic mode"), rc)),
            },
            AttachMode::Auto => match try_mode(Attached::Native) {
                0 => Attached::Native,
                _ => match try_mode(Attached::Generic) {
                    0 => Attached::Generic,
                    rc => return Err(err(format!("attaching to {ifname} (native and generic both failed)"), rc)),
                },
            },
        };
        Ok(XdpProgram {
            ifname: ifname.to_string(),
            ifindex,
            prog: new_prog,
            maps: new_maps,
            mode: attached,
            taken_over: false,
        })
    }

    /// The interface.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Attach mode in effect.
    pub fn mode(&self) -> Attached {
        self.mode
    }

    /// True when an already attached program (and its maps) was taken over.
    pub fn taken_over(&self) -> bool {
        self.taken_over
    }

    /// Sets the fail action (`open`: pass to the kernel; closed: drop) and the match direction.
    pub fn configure(&self, fail_open: bool, match_source: bool) -> Result<(), XdpError> {
        let value = ProgConfig {
            fail_action: if fail_open { bpf::XDP_PASS } else { bpf::XDP_DROP },
            match_source: u32::from(match_source),
        };
        let key = 0u32;
        // SAFETY: key and value match the map's declared sizes and live across the call.
        let rc = unsafe {
            bpf::bpf_map_update_elem(
                self.maps.cfg.as_raw_fd(),
                (&key as *const u32).cast(),
                (&value as *const ProgConfig).cast(),
                0,
            )
        };
        if rc != 0 {
            return Err(err("writing the program config", rc));
        }
        Ok(())
    }

    /// Makes the class maps hold exactly `entries` (adds the new ones first, then removes the
    /// stale ones, so no protected prefix is ever missing in between).
    pub fn sync_classes(&self, entries: &[(Cidr, Class)]) -> Result<(), XdpError> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(cidr, class) in entries {
            match cidr {
                Cidr::V4(net, len) => {
                    v4.push((KeyV4 { prefixlen: u32::from(len), addr: net.to_be_bytes() }, class as u8))
                }
                Cidr::V6(net, len) => {
                    v6.push((KeyV6 { prefixlen: u32::from(len), addr: net.to_be_bytes() }, class as u8))
                }
            }
        }
        sync_map(&self.maps.class_v4, &v4)?;
        sync_map(&self.maps.class_v6, &v6)
    }

    /// Binds the socket `fd` to `queue` (protected frames of that queue go to it).
    pub fn insert_socket(&self, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        // SAFETY: key and value are u32s as the XSKMAP declares.
        let rc = unsafe {
            bpf::bpf_map_update_elem(
                self.maps.xsks.as_raw_fd(),
                (&queue as *const u32).cast(),
                (&fd as *const i32).cast(),
                0,
            )
        };
        if rc != 0 {
            return Err(err(format!("registering the socket of queue {queue}"), rc));
        }
        Ok(())
    }

    /// Unbinds `queue`: its protected frames fall to the fail mode.
    pub fn remove_socket(&self, queue: u32) -> Result<(), XdpError> {
        // SAFETY: key is a u32 as the XSKMAP declares.
        let rc = unsafe { bpf::bpf_map_delete_elem(self.maps.xsks.as_raw_fd(), (&queue as *const u32).cast()) };
        if rc != 0 && -rc != libc::ENOENT {
            return Err(err(format!("unregistering queue {queue}"), rc));
        }
        Ok(())
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> ProgCounters {
        // SAFETY: plain libbpf call.
        let cpus = unsafe { bpf::libbpf_num_possible_cpus() }.max(1) as usize;
        let mut per_cpu = vec![0u64; cpus];
        let mut sum = [0u64; 6];
        for (key, total) in sum.iter_mut().enumerate() {
            let key = key as u32;
            // SAFETY: a per-CPU array lookup writes one u64 per possible CPU into `per_cpu`.
            let rc = unsafe {
                bpf::bpf_map_lookup_elem(
                    self.maps.counters.as_raw_fd(),
                    (&key as *const u32).cast(),
                    per_cpu.as_mut_ptr().cast(),
                )
            };
            if rc == 0 {
                *total = per_cpu.iter().sum();
            }
        }
        ProgCounters {
            not_ip: sum[0],
            local: sum[1],
            unprotected: sum[2],
            redirected: sum[3],
            no_socket: sum[4],
            malformed: sum[5],
        }
    }

    /// Detaches the program (clean shutdown): the interface goes back to plain kernel handling.
    pub fn detach(&self) -> Result<(), XdpError> {
        detach(self.ifindex, &self.ifname, &self.prog, self.mode)
    }
}

fn sync_map<K: Copy + Eq + std::hash::Hash + Default>(map: &OwnedFd, wanted: &[(K, u8)]) -> Result<(), XdpError> {
    for (key, value) in wanted {
        // SAFETY: key and value match the map's declared layout and live across the call.
        let rc = unsafe {
            bpf::bpf_map_update_elem(map.as_raw_fd(), (key as *const K).cast(), (value as *const u8).cast(), 0)
        };
        if rc != 0 {
            return Err(err("writing a prefix into the XDP class map", rc));
        }
    }
    let keep: std::collections::HashSet<K> = wanted.iter().map(|(k, _)| *k).collect();
    let mut stale = Vec::new();
    let mut key = K::default();
    let mut first = true;
    loop {
        let mut next = K::default();
        let prev: *const std::ffi::c_void = if first { std::ptr::null() } else { (&key as *const K).cast() };
        // SAFETY: `prev` is null or a valid key; `next` has room for one key.
        let rc = unsafe { bpf::bpf_map_get_next_key(map.as_raw_fd(), prev, (&mut next as *mut K).cast()) };
        if rc != 0 {
            break;
        }
        if !keep.contains(&next) {
            stale.push(next);
        }
        key = next;
        first = false;
    }
    for k in stale {
        // SAFETY: `k` is a key read from this map.
        unsafe { bpf::bpf_map_delete_elem(map.as_raw_fd(), (&k as *const K).cast()) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_prefix_limit_is_the_programs() {
        let source = include_str!("../../bpf/scrubber_xdp.c");
        let define = format!("#define MAX_PREFIXES {}", super::MAX_XDP_PREFIXES);
        assert!(source.lines().any(|l| l.trim() == define), "bpf/scrubber_xdp.c lacks `{define}`");
    }
}
