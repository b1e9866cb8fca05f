//! Helpers of the QUIC lab tests: real QUIC clients (`scrubber lab quic-client`, quinn) in the
//! client namespace against origin's QUIC service (`Lab::start_quic_server`), crafted UDP
//! datagrams sent from a lab host's own socket, and a capture file read back.

use crate::{Cmd, Lab, Role, scrubber_bin};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use scrubber::lab::quic::{ClientOptions, ClientReport, QUIC_PORT, SERVER_NAME, Totals};

/// Options for `count` connections at `rate` per second from `sources` to origin's service (both
/// families), 4 KiB echoed per connection, no split ClientHello. A connection has 10 s (the
/// client's idle timeout) to complete its handshake and exchange: on a loaded machine a few
/// packets get lost along the lab's path, and quinn's retransmissions (after 1, 2, 4 s) need
/// more than a 5 s limit leaves them.
pub fn client_options(lab: &Lab, sources: &[IpAddr], count: u64, rate: f64) -> ClientOptions {
    ClientOptions {
        targets: vec![
            SocketAddr::new(crate::topo::ORIGIN_V4.into(), QUIC_PORT),
            SocketAddr::new(crate::topo::ORIGIN_V6.into(), QUIC_PORT),
        ],
        sources: sources.to_vec(),
        ca: lab.quic_cert(),
        count,
        duration: None,
        rate,
        concurrency: 64,
        bytes: 4096,
        split_hello_every: 0,
        timeout: Duration::from_secs(10),
    }
}

/// The command running the QUIC clients `o` in the client namespace.
fn client_cmd(lab: &Lab, o: &ClientOptions) -> Cmd {
    let limit = Duration::from_secs_f64(o.count as f64 / o.rate.max(0.1)) + o.timeout + Duration::from_secs(20);
    Cmd::from_argv(&scrubber::lab::quic::client_argv(scrubber_bin(), o)).netns(lab.ns(Role::Client)).timeout(limit)
}

fn report(out: Result<crate::Output, crate::CmdError>) -> ClientReport {
    let out = out.unwrap_or_else(|e| panic!("quic-client: {e}"));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("quic-client output {:?}: {e}", out.stdout))
}

/// Runs the QUIC clients `o` to completion.
pub fn quic_clients(lab: &Lab, o: &ClientOptions) -> ClientReport {
    report(client_cmd(lab, o).run())
}

/// Starts the QUIC clients `o` on a thread; join it for the report.
pub fn spawn_quic_clients(lab: &Lab, o: &ClientOptions) -> std::thread::JoinHandle<ClientReport> {
    let cmd = client_cmd(lab, o);
    std::thread::spawn(move || report(cmd.run()))
}

const SEND_PY: &str = "import socket,sys,time
src,sport,dst,dport=sys.argv[1],int(sys.argv[2]),sys.argv[3],int(sys.argv[4])
s=socket.socket(socket.AF_INET6 if ':' in src else socket.AF_INET,socket.SOCK_DGRAM)
s.bind((src,sport))
for h in sys.argv[5:]:
    s.sendto(bytes.fromhex(h),(dst,dport))
    time.sleep(0.005)
";

/// Sends `payloads` as UDP datagrams from `src` to `dst`, in order, from a socket of `role`'s
/// namespace (so they carry no attack marker).
pub fn send_datagrams(lab: &Lab, role: Role, src: SocketAddr, dst: SocketAddr, payloads: &[Vec<u8>]) {
    let hex: Vec<String> = payloads.iter().map(|p| p.iter().map(|b| format!("{b:02x}")).collect()).collect();
    Cmd::new("python3")
        .args(&["-c", SEND_PY, &src.ip().to_string(), &src.port().to_string()])
        .args(&[&dst.ip().to_string(), &dst.port().to_string()])
        .args(&hex.iter().map(String::as_str).collect::<Vec<_>>())
        .netns(lab.ns(role))
        .timeout(Duration::from_secs(10))
        .run()
        .unwrap_or_else(|e| panic!("sending {} datagrams from {src}: {e}", payloads.len()));
}
