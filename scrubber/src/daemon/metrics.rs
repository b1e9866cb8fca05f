//! Prometheus text endpoint (`daemon.metrics`, default 127.0.0.1:9477, "off" to disable).
//!
//! A `prometheus-client` collector reads what workers last published at scrape time: packets and
//! bytes by verdict and drop reason, monitored drops, events, table occupancy and evictions, per
//! queue I/O and kernel ring statistics, the batch-size histogram, worker busy ratio and CPU, the
//! XDP program's counters, the policy generation. Labels stay low-cardinality (verdict, reason,
//! event, table, interface, queue).

use super::Daemon;
use dataplane::stats::{Event, Stats, Table};
use dataplane::verdict::{DropReason, VerdictKind};
use dataplane::worker::{BATCH_BUCKETS, WorkerReport};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tracing::{info, warn};

#[derive(Debug)]
struct DaemonCollector(Weak<Daemon>);

type Labels = Vec<(&'static str, String)>;

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, u64)]) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[(Labels, f64)]) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn l(key: &'static str, value: impl ToString) -> Labels {
    vec![(key, value.to_string())]
}

/// Per-worker reports with their interface and queue.
fn reports(d: &Daemon) -> Vec<(String, u32, WorkerReport)> {
    d.workers
        .iter()
        .map(|w| {
            let r = match w.shared.report.lock() {
                Ok(r) => r.clone(),
                Err(p) => p.into_inner().clone(),
            };
            (w.interface.clone(), w.queue, r)
        })
        .collect()
}

impl Collector for DaemonCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(d) = self.0.upgrade() else { return Ok(()) };
        let reps = reports(&d);
        let mut total = Stats::default();
        for (_, _, r) in &reps {
            total.add(&r.stats);
        }
        let e = &mut enc;
        counter(
            e,
            "scrubber_packets",
            "Packets by verdict.",
            &VerdictKind::ALL.iter().map(|k| (l("verdict", k), total.packets[k.index()])).collect::<Vec<_>>(),
        )?;
        counter(
            e,
            "scrubber_bytes",
            "Bytes by verdict.",
            &VerdictKind::ALL.iter().map(|k| (l("verdict", k), total.bytes[k.index()])).collect::<Vec<_>>(),
        )?;
        counter(
            e,
            "scrubber_dropped_packets",
            "Dropped packets by reason.",
            &DropReason::ALL.iter().map(|r| (l("reason", r), total.drops[r.index()])).collect::<Vec<_>>(),
        )?;
        counter(
            e,
            "scrubber_dropped_bytes",
            "Dropped bytes by reason.",
            &DropReason::ALL.iter().map(|r| (l("reason", r), total.drop_bytes[r.index()])).collect::<Vec<_>>(),
        )?;
        counter(
            e,
            "scrubber_monitored_packets",
            "Packets a monitor-mode profile would have dropped, by reason.",
            &DropReason::ALL.iter().map(|r| (l("reason", r), total.monitored[r.index()])).collect::<Vec<_>>(),
        )?;
        counter(
            e,
            "scrubber_events",
            "Pipeline events.",
            &Event::ALL.iter().map(|ev| (l("event", ev), total.events[ev.index()])).collect::<Vec<_>>(),
        )?;
        gauge(
            e,
            "scrubber_table_entries",
            "Entries in use, all workers.",
            &Table::ALL.iter().map(|t| (l("table", t), total.tables[t.index()].len as f64)).collect::<Vec<_>>(),
        )?;
        gauge(
            e,
            "scrubber_table_capacity",
            "Table capacity, all workers.",
            &Table::ALL.iter().map(|t| (l("table", t), total.tables[t.index()].capacity as f64)).collect::<Vec<_>>(),
        )?;
        counter(
            e,
            "scrubber_table_evictions",
            "Entries evicted to make room.",
            &Table::ALL.iter().map(|t| (l("table", t), total.tables[t.index()].evictions)).collect::<Vec<_>>(),
        )?;

        let q = |i: &str, n: u32| vec![("interface", i.to_string()), ("queue", n.to_string())];
        let per = |f: &dyn Fn(&WorkerReport) -> u64| reps.iter().map(|(i, n, r)| (q(i, *n), f(r))).collect::<Vec<_>>();
        counter(e, "scrubber_rx_packets", "Frames received per queue.", &per(&|r| r.io.rx))?;
        counter(e, "scrubber_tx_egress_packets", "Frames sent on egress per queue.", &per(&|r| r.io.tx_egress))?;
        counter(
            e,
            "scrubber_tx_ingress_packets",
            "Frames sent back on ingress (replies, hairpin) per queue.",
            &per(&|r| r.io.tx_ingress),
        )?;
        counter(
            e,
            "scrubber_tx_ring_full_drops",
            "Frames dropped because a TX ring was full.",
            &per(&|r| r.io.tx_ring_full),
        )?;
        counter(
            e,
            "scrubber_pass_dropped",
            "Frames the pipeline would pass to the kernel that userspace cannot re-inject.",
            &per(&|r| r.pass_dropped),
        )?;
        counter(
            e,
            "scrubber_xsk_rx_dropped",
            "Kernel: frames dropped (XDP_STATISTICS rx_dropped).",
            &per(&|r| r.rings.0.rx_dropped),
        )?;
        counter(e, "scrubber_xsk_rx_ring_full", "Kernel: RX ring full.", &per(&|r| r.rings.0.rx_ring_full))?;
        counter(e, "scrubber_xsk_fill_ring_empty", "Kernel: fill ring empty.", &per(&|r| r.rings.0.fill_ring_empty))?;
        counter(
            e,
            "scrubber_xsk_tx_invalid",
            "Kernel: invalid TX descriptors.",
            &per(&|r| r.rings.0.tx_invalid + r.rings.1.map_or(0, |x| x.tx_invalid)),
        )?;
        let cpu: Vec<_> = reps.iter().map(|(i, n, r)| (q(i, *n), r.cpu_ns as f64 / 1e9)).collect();
        let mut m =
            e.encode_descriptor("scrubber_worker_cpu_seconds", "Worker thread CPU time.", None, MetricType::Counter)?;
        for (labels, v) in &cpu {
            ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
        }
        let busy: Vec<_> = reps
            .iter()
            .map(|(i, n, r)| {
                let all = r.busy_passes + r.idle_passes;
                (q(i, *n), if all == 0 { 0.0 } else { r.busy_passes as f64 / all as f64 })
            })
            .collect();
        gauge(e, "scrubber_worker_busy_ratio", "Share of worker loop passes that received frames.", &busy)?;
        let mut m =
            e.encode_descriptor("scrubber_batch_size", "Frames per received batch.", None, MetricType::Histogram)?;
        for (i, n, r) in &reps {
            let mut cumulative = 0u64;
            let mut buckets = Vec::with_capacity(BATCH_BUCKETS);
            let mut sum = 0.0;
            for (b, &count) in r.batch_sizes.iter().enumerate() {
                cumulative += count;
                let upper = if b + 1 == BATCH_BUCKETS { f64::INFINITY } else { ((1u64 << (b + 1)) - 1) as f64 };
                // The encoder accumulates bucket counts itself.
                buckets.push((upper, count));
                sum += count as f64 * (1u64 << b) as f64;
            }
            m.encode_family(&q(i, *n))?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, cumulative, &buckets, None)?;
        }
        let mut xdp_rows = Vec::new();
        for p in &d.programs {
            let c = p.counters();
            for (action, v) in [
                ("not_ip", c.not_ip),
                ("local", c.local),
                ("unprotected", c.unprotected),
                ("redirected", c.redirected),
                ("no_socket", c.no_socket),
                ("malformed", c.malformed),
            ] {
                xdp_rows.push((vec![("interface", p.ifname().to_string()), ("action", action.to_string())], v));
            }
        }
        counter(e, "scrubber_xdp_packets", "XDP program decisions.", &xdp_rows)?;
        let policy = d.cell.load();
        gauge(
            e,
            "scrubber_policy_generation",
            "Generation of the published policy.",
            &[(vec![], policy.generation as f64)],
        )?;
        gauge(e, "scrubber_bypass", "1 while bypass is on.", &[(vec![], f64::from(u8::from(policy.bypass)))])?;
        let mut amp_rows = Vec::new();
        for (i, v) in policy.amp.catalogue.vectors().iter().enumerate() {
            for o in dataplane::amp::Outcome::ALL {
                let n = total.amp.packets_of(i, *o);
                if n > 0 {
                    amp_rows.push((vec![("vector", v.name.clone()), ("outcome", o.name().to_string())], n));
                }
            }
        }
        counter(e, "scrubber_amp_packets", "UDP reflection vectors seen, by outcome.", &amp_rows)?;
        let v = d.shared.syn.verified.stats(super::now().mono_ns / 1_000_000_000);
        let sources = "Sources verified by SYN authentication (all workers).";
        gauge(e, "scrubber_syn_verified_sources", sources, &[(vec![], v.len as f64)])?;
        counter(
            e,
            "scrubber_syn_verified_evictions",
            "Verified sources evicted to make room.",
            &[(vec![], v.evictions)],
        )?;
        let mut auto_rows = Vec::new();
        for p in &policy.prefixes {
            if let Some(st) = d.shared.syn.auto.status(p.cidr) {
                auto_rows.push((vec![("prefix", p.cidr.to_string())], f64::from(u8::from(st.active))));
            }
        }
        gauge(e, "scrubber_syn_auto_active", "1 while auto SYN authentication is on for a prefix.", &auto_rows)?;
        Ok(())
    }
}

/// The running endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Starts serving `GET /metrics` on the configured address; `None` when metrics are off.
    pub fn start(daemon: &Arc<Daemon>) -> std::io::Result<Option<MetricsServer>> {
        let addr = daemon.config.daemon.metrics.trim().to_string();
        if addr == "off" || addr.is_empty() {
            return Ok(None);
        }
        let listener = TcpListener::bind(&addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("daemon.metrics: cannot listen on {addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(DaemonCollector(Arc::downgrade(daemon))));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        info!(address = addr, "metrics endpoint");
        let thread = std::thread::Builder::new().name("metrics".into()).spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        // A scraper that stops reading must not hold this thread, or a shutdown
                        // that waits for it.
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                        let mut request = String::new();
                        let _ = BufReader::new(&stream).read_line(&mut request);
                        let (status, body) = if request.starts_with("GET /metrics") {
                            let mut body = String::new();
                            match prometheus_client::encoding::text::encode(&mut body, &registry) {
                                Ok(()) => ("200 OK", body),
                                Err(_) => ("500 Internal Server Error", String::new()),
                            }
                        } else {
                            ("404 Not Found", "try /metrics\n".to_string())
                        };
                        let _ = write!(
                            stream,
                            "HTTP/1.0 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                    Err(e) => {
                        warn!("metrics accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
        Ok(Some(MetricsServer { stop, thread: Some(thread) }))
    }

    /// Stops the endpoint.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
