//! The one way the lab runs an external program (`ip`, `ethtool`, `sysctl`, `nft`, clients):
//! always under a timeout, optionally inside a namespace (`ip netns exec NS ...`), with an error
//! that carries the command line, the exit status and what the program wrote to stderr.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Default limit for one configuration command (`ip`, `ethtool`, `sysctl`, `nft`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for a program's output once it has exited or been killed (a grandchild that
/// escaped the process group may keep the pipe open).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// What a finished command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started.
    #[error("`{cmdline}`: cannot start: {source}")]
    Spawn {
        /// The command line.
        cmdline: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The program ran past its limit and was killed.
    #[error("`{cmdline}`: no exit within {timeout:?}; killed{}", stderr_suffix(.stderr))]
    Timeout {
        /// The command line.
        cmdline: String,
        /// The limit.
        timeout: Duration,
        /// What it wrote to stderr before it was killed.
        stderr: String,
    },
    /// The program exited with a status not in the accepted set.
    #[error("`{cmdline}` failed (exit {code}){}", stderr_suffix(.stderr))]
    Failed {
        /// The command line.
        cmdline: String,
        /// Exit code (`-1`: killed by a signal).
        code: i32,
        /// Standard output.
        stdout: String,
        /// Standard error.
        stderr: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() { String::new() } else { format!(": {s}") }
}

/// A command to run: program, arguments, optional namespace, stdin and timeout.
#[derive(Clone, Debug)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    netns: Option<String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    ok_codes: Vec<i32>,
}

impl Cmd {
    /// `program` with no arguments, run in the current namespace, limit [`DEFAULT_TIMEOUT`],
    /// success = exit 0.
    pub fn new(program: impl Into<String>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            netns: None,
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            ok_codes: vec![0],
        }
    }

    /// `argv[0]` with `argv[1..]` as arguments.
    ///
    /// # Panics
    /// When `argv` is empty (a programming error).
    pub fn from_argv<S: AsRef<str>>(argv: &[S]) -> Cmd {
        let (first, rest) = argv.split_first().expect("argv must name a program");
        Cmd::new(first.as_ref()).args(rest)
    }

    /// Adds one argument.
    pub fn arg(mut self, a: impl Into<String>) -> Cmd {
        self.args.push(a.into());
        self
    }

    /// Adds arguments.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Cmd {
        self.args.extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Runs the program inside network namespace `ns` (`ip netns exec ns program ...`).
    pub fn netns(mut self, ns: impl Into<String>) -> Cmd {
        self.netns = Some(ns.into());
        self
    }

    /// Feeds `data` to the program's standard input.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(data.into());
        self
    }

    /// Sets the limit after which the program (and its process group) is killed.
    pub fn timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = timeout;
        self
    }

    /// Exit codes that count as success (default: only 0).
    pub fn ok_codes(mut self, codes: &[i32]) -> Cmd {
        self.ok_codes = codes.to_vec();
        self
    }

    /// The full argv actually executed (with the `ip netns exec` prefix when a namespace is set).
    pub fn argv(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(self.args.len() + 4);
        if let Some(ns) = &self.netns {
            v.extend(["ip".to_string(), "netns".to_string(), "exec".to_string(), ns.clone()]);
        }
        v.push(self.program.clone());
        v.extend(self.args.iter().cloned());
        v
    }

    /// The command line as a shell would show it (for errors and logs).
    pub fn cmdline(&self) -> String {
        shell_join(&self.argv())
    }

    fn command(&self) -> Command {
        let argv = self.argv();
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        // Own process group, so a timeout kills everything the program started.
        c.process_group(0);
        c
    }

    /// Runs to completion (or the timeout) and returns its output when the exit code is accepted.
    pub fn run(&self) -> Result<Output, CmdError> {
        let cmdline = self.cmdline();
        let mut c = self.command();
        c.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|source| CmdError::Spawn { cmdline: cmdline.clone(), source })?;
        if let (Some(data), Some(mut pipe)) = (self.stdin.clone(), child.stdin.take()) {
            // A thread, so a program that does not read its input cannot block us past the timeout.
            thread::spawn(move || {
                let _ = pipe.write_all(&data);
            });
        }
        let out_rx = drain(child.stdout.take());
        let err_rx = drain(child.stderr.take());
        let status = wait_deadline(&mut child, self.timeout);
        let stdout = out_rx.recv_timeout(DRAIN_GRACE).unwrap_or_default();
        let stderr = err_rx.recv_timeout(DRAIN_GRACE).unwrap_or_default();
        let Some(status) = status else {
            return Err(CmdError::Timeout { cmdline, timeout: self.timeout, stderr });
        };
        let code = exit_code(status);
        if self.ok_codes.contains(&code) {
            Ok(Output { code, stdout, stderr })
        } else {
            Err(CmdError::Failed { cmdline, code, stdout, stderr })
        }
    }

    /// Starts the program in the background with stdout and stderr appended to `log`, stdin
    /// closed, in its own process group (so it survives the caller and a terminal's Ctrl-C).
    /// The caller owns the returned child (reap it, or let it be re-parented when exiting).
    pub fn spawn_logged(&self, log: &Path) -> Result<Child, CmdError> {
        let cmdline = self.cmdline();
        let open = || File::options().create(true).append(true).open(log);
        let (out, err) = match open().and_then(|f| Ok((f.try_clone()?, f))) {
            Ok(pair) => pair,
            Err(source) => return Err(CmdError::Spawn { cmdline, source }),
        };
        self.command()
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| CmdError::Spawn { cmdline, source })
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cmdline())
    }
}

/// Runs `argv` inside namespace `ns` with a limit; success = exit 0.
pub fn exec_in<S: AsRef<str>>(ns: &str, argv: &[S], timeout: Duration) -> Result<Output, CmdError> {
    Cmd::from_argv(argv).netns(ns).timeout(timeout).run()
}

/// Runs `argv` in the current namespace with a limit; success = exit 0.
pub fn exec<S: AsRef<str>>(argv: &[S], timeout: Duration) -> Result<Output, CmdError> {
    Cmd::from_argv(argv).timeout(timeout).run()
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Waits for `child` up to `timeout`; on expiry kills its process group and returns `None`.
fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => break,
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(20));
    }
    kill_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Sends SIGKILL to process group `pgid` (a child started by [`Cmd`] leads its own group).
pub fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or(-1)
}

/// Joins argv into one line, quoting what a shell would need quoted.
pub fn shell_join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| {
            let a = a.as_ref();
            let plain = !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+[]!".contains(&b));
            if plain { a.to_string() } else { format!("'{}'", a.replace('\'', r"'\''")) }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_failure_and_timeout_are_distinguished() {
        let ok = Cmd::new("sh").args(&["-c", "echo out; echo err >&2"]).run().unwrap();
        assert_eq!((ok.code, ok.stdout.as_str(), ok.stderr.as_str()), (0, "out\n", "err\n"));

        let e = Cmd::new("sh").args(&["-c", "echo boom >&2; exit 3"]).run().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`sh -c 'echo boom >&2; exit 3'` failed (exit 3): boom"), "{msg}");

        let t0 = Instant::now();
        let e = Cmd::new("sleep").arg("5").timeout(Duration::from_millis(100)).run().unwrap_err();
        assert!(matches!(e, CmdError::Timeout { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(3));

        let e = Cmd::new("/nonexistent/prog").run().unwrap_err();
        assert!(matches!(e, CmdError::Spawn { .. }), "{e}");
    }

    #[test]
    fn stdin_and_accepted_codes() {
        let out = Cmd::new("sh").args(&["-c", "cat; exit 1"]).stdin("abc").ok_codes(&[0, 1]).run().unwrap();
        assert_eq!((out.code, out.stdout.as_str()), (1, "abc"));
    }

    #[test]
    fn netns_prefix_and_quoting() {
        let c = Cmd::new("sysctl").args(&["-w", "a=b"]).netns("scrb0-edge");
        assert_eq!(c.cmdline(), "ip netns exec scrb0-edge sysctl -w a=b");
        assert_eq!(shell_join(&["echo", "a b", "it's"]), r"echo 'a b' 'it'\''s'");
    }
}
