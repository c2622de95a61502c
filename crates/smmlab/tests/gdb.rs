//! `smmlab run --gdb`: the built-in firmware driven by a real gdb (Debian's gdb, through
//! testkit: a skip without it, a failure under CI=true) over the remote protocol.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long gdb and smmlab may take, each, before the test kills them and fails.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// Waits for `child` until `TIMEOUT`, killing it then; its exit code, None if killed.
fn wait(child: &mut Child, what: &str) -> Option<i32> {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st.code();
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {TIMEOUT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `smmlab run --gdb PORT` (built-in firmware, quiet) and waits until it listens;
/// the child and its stderr lines (all of them once the child has ended).
fn start_smmlab(port: u16, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smmlab"))
        .args(["run", "--quiet", "--gdb", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smmlab");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains("waiting for gdb") => return (child, rx),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let code = wait(&mut child, "smmlab");
                panic!("smmlab ended (status {code:?}) before listening for gdb");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("smmlab did not listen for gdb within {TIMEOUT:?}; killed");
        }
    }
}

/// What a gdb session printed and how it ended.
struct Session {
    /// gdb's stdout and stderr.
    gdb: String,
    gdb_code: Option<i32>,
    smmlab_code: Option<i32>,
    /// smmlab's stderr.
    smmlab: String,
}

/// Runs gdb in batch mode against a new `smmlab run --gdb` with `commands` (after
/// connecting); None when gdb is missing (a skip, or a failure under CI=true).
fn session(commands: &[&str]) -> Option<Session> {
    session_with(&[], commands)
}

/// [`session`] with `extra` arguments to `smmlab run`.
fn session_with(extra: &[&str], commands: &[&str]) -> Option<Session> {
    if !testkit::package_command("gdb", "gdb") {
        return None;
    }
    let port = free_port();
    let (mut smmlab, lines) = start_smmlab(port, extra);
    let mut args = vec!["-batch".to_string(), "-nx".into(), "-ex".into(), "set architecture i386:x86-64".into(), "-ex".into(), format!("target remote 127.0.0.1:{port}")];
    for c in commands {
        args.push("-ex".into());
        args.push(c.to_string());
    }
    let mut gdb = Command::new("gdb").args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start gdb");
    let (mut out, mut err) = (gdb.stdout.take().expect("stdout"), gdb.stderr.take().expect("stderr"));
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let gdb_code = wait(&mut gdb, "gdb");
    let text = out_reader.join().expect("gdb stdout") + &err_reader.join().expect("gdb stderr");
    let code = wait(&mut smmlab, "smmlab");
    // The reader thread ends at the pipe's end, once smmlab has exited.
    let smmlab_err = lines.iter().collect::<Vec<_>>().join("\n");
    Some(Session { gdb: text, gdb_code, smmlab_code: code, smmlab: smmlab_err })
}

/// The value gdb printed for register `reg` in `info registers`, the n-th time (0 = first).
fn register(text: &str, reg: &str, n: usize) -> u64 {
    let line = text.lines().filter(|l| l.split_whitespace().next() == Some(reg)).nth(n).unwrap_or_else(|| panic!("no {reg} line #{n} in gdb's output:\n{text}"));
    let value = line.split_whitespace().nth(1).expect("a value");
    u64::from_str_radix(value.trim_start_matches("0x"), 16).expect("a hex value")
}

#[test]
fn gdb_reads_the_reset_vector_steps_and_shows_the_smm_view() {
    let Some(Session { gdb: text, smmlab_code: code, smmlab: err, .. }) = session(&["info registers rip cs", "monitor smm", "stepi", "info registers rip", "x/3xb 0xffff0", "kill"]) else {
        return;
    };
    // (gdb's own status is 1 here: batch mode counts the closed connection after `kill`.)
    assert_eq!(register(&text, "rip", 0), 0xfff0, "{text}");
    assert_eq!(register(&text, "cs", 0), 0xf000, "{text}");
    let after = register(&text, "rip", 1);
    assert_ne!(after, 0xfff0, "stepi did not move RIP:\n{text}");
    assert!(text.contains("in SMM: no"), "{text}");
    assert!(text.contains("SMBASE: 0x30000"), "{text}");
    assert!(text.contains("SMIs: 0"), "{text}");
    // The reset vector's instruction: a near jump (0xE9) in the ROM's last 16 bytes.
    assert!(text.contains("0xffff0:\t0xe9"), "{text}");
    assert_eq!(code, Some(0), "smmlab after gdb's kill:\n{err}");
    assert!(err.contains("gdb killed the program"), "{err}");
}

#[test]
fn gdb_breaks_at_the_smi_entry_in_smm() {
    // The first SMI enters at SMBASE 0x30000 + 0x8000: CS 0x3000, RIP 0x8000 (breakpoints are
    // on RIP). SMRAM reads as SMM sees it: the entry code at physical 0x38000.
    let Some(Session { gdb: text, gdb_code, smmlab_code: code, smmlab: err }) = session(&["break *0x8000", "continue", "info registers rip cs", "monitor smm", "x/1xb 0x38000", "stepi", "info registers rip", "delete", "continue"]) else {
        return;
    };
    assert!(text.contains("Breakpoint 1, 0x0000000000008000"), "{text}");
    assert_eq!(register(&text, "rip", 0), 0x8000, "{text}");
    assert_eq!(register(&text, "cs", 0), 0x3000, "{text}");
    assert!(text.contains("in SMM: yes"), "{text}");
    assert!(text.contains("SMIs: 1"), "{text}");
    assert!(!text.contains("0x38000:\t0x00\n"), "SMRAM read as zeros from SMM:\n{text}");
    assert_ne!(register(&text, "rip", 1), 0x8000, "stepi in SMM did not move RIP:\n{text}");
    // With no breakpoint left, the run goes to its end: gdb sees the program exit.
    assert!(text.contains("exited normally"), "{text}");
    assert_eq!(gdb_code, Some(0), "{text}");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("the run ended: debug-exit"), "{err}");
}

#[test]
fn the_instruction_limit_ends_the_program_with_its_exit_code() {
    let Some(Session { gdb: text, gdb_code, smmlab_code: code, smmlab: err }) = session_with(&["--max-instructions", "1000"], &["continue"]) else {
        return;
    };
    assert!(text.contains("exited with code 04"), "{text}");
    assert_eq!(gdb_code, Some(0), "{text}");
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("the run ended: instruction-limit"), "{err}");
}

#[test]
fn the_settings_store_is_saved_when_the_gdb_session_ends() {
    let nvram = std::env::temp_dir().join(format!("smmlab-gdb-nvram-{}.bin", std::process::id()));
    let _ = std::fs::remove_file(&nvram);
    let Some(Session { smmlab_code: code, smmlab: err, .. }) = session_with(&["--nvram", nvram.to_str().unwrap()], &["kill"]) else {
        return;
    };
    assert_eq!(code, Some(0), "{err}");
    assert!(nvram.exists(), "--nvram was not written after the session: {err}");
    let _ = std::fs::remove_file(&nvram);
}

#[test]
fn a_gdb_that_drops_the_connection_ends_the_run() {
    let port = free_port();
    let (mut smmlab, lines) = start_smmlab(port, &[]);
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    drop(s);
    let code = wait(&mut smmlab, "smmlab");
    let err: Vec<String> = lines.iter().collect();
    assert_eq!(code, Some(0), "{err:?}");
    assert!(err.iter().any(|l| l.contains("the run ends here")), "{err:?}");
}

/// One remote-protocol packet, `$data#checksum`.
fn packet(data: &str) -> Vec<u8> {
    let sum = data.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    format!("${data}#{sum:02x}").into_bytes()
}

/// Reads from `s` until a whole packet (`$...#xx`) has arrived; the packet's data.
fn read_packet(s: &mut std::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8];
    loop {
        s.read_exact(&mut byte).unwrap_or_else(|e| panic!("reading from the stub: {e}; got {:?}", String::from_utf8_lossy(&got)));
        got.push(byte[0]);
        if let Some(start) = got.iter().position(|b| *b == b'$') {
            if let Some(hash) = got[start..].iter().position(|b| *b == b'#') {
                if got.len() >= start + hash + 3 {
                    return String::from_utf8_lossy(&got[start + 1..start + hash]).into_owned();
                }
            }
        }
    }
}

/// The remote protocol spoken directly (no gdb needed): gdb's Ctrl-C and an address range
/// past 2^64.
#[test]
fn ctrl_c_stops_a_continue_with_sigint_and_bad_addresses_are_errors() {
    use std::io::Write;
    let port = free_port();
    let (mut smmlab, lines) = start_smmlab(port, &[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    fn ask(s: &mut std::net::TcpStream, data: &str) -> String {
        s.write_all(&packet(data)).expect("send");
        let reply = read_packet(s);
        s.write_all(b"+").expect("ack");
        reply
    }
    let stop = ask(&mut s, "?");
    assert!(stop.starts_with("S05") || stop.starts_with("T05"), "{stop}");
    // Memory at the top of the address space: an error, not a crash.
    assert!(ask(&mut s, "mfffffffffffffffc,8").starts_with('E'));
    // Continue, then gdb's interrupt byte: the stub stops the CPU with SIGINT (2).
    s.write_all(&packet("c")).expect("continue");
    s.write_all(&[0x03]).expect("ctrl-c");
    let stop = read_packet(&mut s);
    s.write_all(b"+").expect("ack");
    assert!(stop.starts_with("S02") || stop.starts_with("T02"), "{stop}");
    let _ = s.write_all(&packet("k"));
    drop(s);
    let code = wait(&mut smmlab, "smmlab");
    let err: Vec<String> = lines.iter().collect();
    assert_eq!(code, Some(0), "{err:?}");
}
