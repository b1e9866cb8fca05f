//! Client side of the control socket, shared by `scrubctl`, the lab and the tests.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends one request and returns the `result` of the response, or its error as text.
pub fn request(socket: &Path, cmd: &str, args: Value) -> Result<Value, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let mut req = json!({"id": 1, "version": 1, "cmd": cmd});
    if let (Value::Object(r), Value::Object(a)) = (&mut req, args) {
        r.extend(a);
    }
    let sent = writeln!(stream, "{req}");
    // A refusal (`forbidden`, `busy`) comes before the request is read: read it even when the
    // daemon has already closed its side.
    let mut line = String::new();
    let read = BufReader::new(&stream).read_line(&mut line);
    if let Err(e) = sent
        && line.is_empty()
    {
        return Err(format!("sending the request: {e}"));
    }
    read.map_err(|e| format!("reading the response: {e}"))?;
    let resp: Value = serde_json::from_str(&line).map_err(|e| format!("bad response: {e}"))?;
    if resp["ok"] == Value::Bool(true) {
        Ok(resp["result"].clone())
    } else {
        Err(format!(
            "{}: {}",
            resp["error"]["code"].as_str().unwrap_or("error"),
            resp["error"]["message"].as_str().unwrap_or("")
        ))
    }
}
