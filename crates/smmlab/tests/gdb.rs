//! `smmlab run --gdb` and `smmlab gdb`: the built-in firmware driven by a real gdb (Debian's
//! gdb, through testkit: a skip without it, a failure under CI=true) over the remote protocol.

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
    let addr = format!("127.0.0.1:{port}");
    let args: Vec<&str> = ["run", "--quiet", "--gdb", &addr].into_iter().chain(extra.iter().copied()).collect();
    start(&args)
}

/// Starts smmlab with `args` and waits until it listens for gdb.
fn start(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smmlab"))
        .args(args)
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
    let (smmlab, lines) = start_smmlab(port, extra);
    Some(drive(smmlab, lines, &format!("target remote 127.0.0.1:{port}"), commands))
}

/// Runs gdb in batch mode against a new `smmlab gdb --listen` (built-in firmware) with
/// `commands`; None when gdb is missing.
fn gdb_session(commands: &[&str]) -> Option<Session> {
    gdb_session_with(&[], commands)
}

/// [`gdb_session`] with `extra` run options.
fn gdb_session_with(extra: &[&str], commands: &[&str]) -> Option<Session> {
    if !testkit::package_command("gdb", "gdb") {
        return None;
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let args: Vec<&str> = ["gdb", "--listen", &addr].into_iter().chain(extra.iter().copied()).collect();
    let (smmlab, lines) = start(&args);
    Some(drive(smmlab, lines, &format!("target remote {addr}"), commands))
}

/// gdb connected with `connect`, then `commands`, in batch mode; what it and `smmlab` said.
fn drive(mut smmlab: Child, lines: mpsc::Receiver<String>, connect: &str, commands: &[&str]) -> Session {
    let mut args = vec!["-batch".to_string(), "-nx".into(), "-ex".into(), "set architecture i386:x86-64".into(), "-ex".into(), connect.to_string()];
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
    Session { gdb: text, gdb_code, smmlab_code: code, smmlab: smmlab_err }
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

/// The bytes of each `x/Nxb` gdb printed, one list per command: runs of `ADDR:\t0x..` lines
/// where each line starts where the one before ended (gdb prints monitor output on stderr,
/// so two commands' lines can be adjacent in stdout).
fn examined(text: &str) -> Vec<Vec<u8>> {
    let mut groups: Vec<Vec<u8>> = Vec::new();
    let mut next: Option<u64> = None;
    for line in text.lines() {
        let parsed = line.split_once(":\t").and_then(|(addr, rest)| Some((u64::from_str_radix(addr.strip_prefix("0x")?, 16).ok()?, rest)));
        let Some((addr, rest)) = parsed else {
            next = None;
            continue;
        };
        let bytes: Vec<u8> = rest.split('\t').map(|b| u8::from_str_radix(b.trim().trim_start_matches("0x"), 16).expect("a byte")).collect();
        if next != Some(addr) {
            groups.push(Vec::new());
        }
        next = Some(addr + bytes.len() as u64);
        groups.last_mut().expect("a group").extend(bytes);
    }
    groups
}

/// Every `info registers` value of `reg` gdb printed, in order.
fn registers(text: &str, reg: &str) -> Vec<u64> {
    text.lines()
        .filter(|l| l.split_whitespace().next() == Some(reg))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).expect("a hex value"))
        .collect()
}

/// The SMM entry state, step by step into the built-in firmware's 64-bit SMM code, the two
/// views of SMRAM, and the way back out by RSM.
#[test]
fn break_on_smi_steps_the_entry_stub_into_long_mode_and_views_smram_both_ways() {
    const STEPS: usize = 60;
    let mut cmds = vec![
        "info registers in_smm smbase cr0",
        "monitor break-on-smi on",
        // SMI 1: the relocation SMI at the default SMBASE; SMI 2: the first at the new one.
        "continue",
        "info registers rip cs cs_base smbase in_smm",
        "continue",
        "info registers rip cs cs_base cs_limit smbase in_smm cr0 efer",
        "monitor view smram",
        "x/16xb $smbase + 0x8000",
        "monitor view normal",
        "x/16xb $smbase + 0x8000",
        "monitor view cpu",
        "x/16xb $cs_base + $rip",
        "monitor break-on-smi off",
    ];
    for _ in 0..STEPS {
        cmds.extend(["stepi", "info registers cs efer cr0"]);
    }
    cmds.extend(["monitor break-on-rsm on", "continue", "info registers in_smm", "monitor smm", "monitor timeline", "kill"]);
    let Some(Session { gdb: text, smmlab_code: code, smmlab: err, .. }) = gdb_session(&cmds) else {
        return;
    };
    // At reset: not in SMM, the default SMBASE, CR0 60000010h (SDM vol. 3A table 10-1).
    assert_eq!(register(&text, "in_smm", 0), 0, "{text}");
    assert_eq!(register(&text, "smbase", 0), 0x30000, "{text}");
    assert_eq!(register(&text, "cr0", 0), 0x6000_0010, "{text}");
    // SMI 1 enters at 0x3000:0x8000.
    assert_eq!(register(&text, "rip", 0), 0x8000, "{text}");
    assert_eq!(register(&text, "cs_base", 0), 0x30000, "{text}");
    assert_eq!(register(&text, "in_smm", 1), 1, "{text}");
    // SMI 2 at the relocated SMBASE, in the SMM entry state: CS = SMBASE >> 4, base SMBASE,
    // 4 GiB limit, paging and protection off.
    let smbase = register(&text, "smbase", 2);
    assert_ne!(smbase, 0x30000, "SMBASE was not relocated:\n{text}");
    assert_eq!(register(&text, "rip", 1), 0x8000, "{text}");
    // (The selector is 16 bits: SMBASE >> 4 truncated, SDM vol. 3C table 32-4.)
    assert_eq!(register(&text, "cs", 1), (smbase >> 4) & 0xffff, "{text}");
    assert_eq!(register(&text, "cs_base", 1), smbase, "{text}");
    assert_eq!(register(&text, "cs_limit", 0), 0xffff_ffff, "{text}");
    assert_eq!(register(&text, "in_smm", 2), 1, "{text}");
    assert_eq!(register(&text, "cr0", 1) & 0x8000_0001, 0, "{text}");
    assert_eq!(register(&text, "efer", 0), 0, "{text}");
    assert!(err.contains("SMI 2 entered"), "{err}");
    // The entry code through the SMM view is the firmware's stub (firmware/src/boot/stubs.rs:
    // a short jump over the GDTR its LGDT loads, which points into the stub at +0x38); a
    // non-SMM reader gets all-ones from the chipset; the CPU's own view now (in SMM) is SMRAM.
    let x = examined(&text);
    assert_eq!(x.len(), 3, "{text}");
    assert_eq!(x[0][0], 0xeb, "SMRAM's entry code {:02x?} does not start with the stub's jump", x[0]);
    let gdt_base = u32::from_le_bytes(x[0][10..14].try_into().unwrap());
    assert_eq!(gdt_base as u64, smbase + 0x8038, "SMRAM's entry code {:02x?} has no GDT pointer into itself", x[0]);
    assert_eq!(x[1], vec![0xff; 16], "{text}");
    assert_eq!(x[2], x[0], "{text}");
    // Stepping: from the 16-bit entry state through protected mode into long mode (EFER.LMA,
    // CR0.PG and PE, a new CS).
    let (cs, efer, cr0) = (registers(&text, "cs"), registers(&text, "efer"), registers(&text, "cr0"));
    let steps = cs.len() - 2;
    assert_eq!(steps, STEPS, "{text}");
    let long = (2..cs.len()).find(|&i| efer[i - 1] & 0x400 != 0).unwrap_or_else(|| panic!("no step reached long mode (EFER.LMA) in {STEPS} steps:\n{text}"));
    assert_eq!(cr0[long] & 0x8000_0001, 0x8000_0001, "{text}");
    assert_ne!(cs[long], (smbase >> 4) & 0xffff, "{text}");
    // With break-on-rsm: out of SMM again, SMI 2 done and in the timeline.
    assert_eq!(*registers(&text, "in_smm").last().unwrap(), 0, "{text}");
    assert!(text.contains("in SMM: no"), "{text}");
    assert!(err.contains("SMI 2 returned (RSM)"), "{err}");
    assert!(text.contains("(SMBASE relocation)"), "the timeline lacks SMI 1:\n{text}");
    assert!(text.lines().any(|l| l.contains("SMI    2") && l.contains("instr")), "the timeline lacks SMI 2:\n{text}");
    assert_eq!(code, Some(0), "{err}");
}

/// `monitor smi` is the OS's APM write: the next stepi stops at the SMI's entry, and the
/// handler's answer (the ping's "PONG" in RAX) is there after RSM.
#[test]
fn monitor_smi_raises_a_software_smi() {
    let cmds = [
        "monitor break-on-rsm on",
        // The firmware's first SMIs (relocation, then ready-to-lock) enable the APM SMI.
        "continue",
        "continue",
        "monitor smm",
        "monitor smi 0x01",
        "stepi",
        "info registers rip in_smm",
        "monitor smm",
        "continue",
        "info registers rax in_smm",
        "monitor timeline",
        "kill",
    ];
    let Some(Session { gdb: text, smmlab: err, smmlab_code: code, .. }) = gdb_session(&cmds) else {
        return;
    };
    assert!(text.contains("SMIs: 2\n"), "{text}");
    assert!(text.contains("SW SMI 0x01 raised"), "{text}");
    assert_eq!(register(&text, "rip", 0), 0x8000, "stepi did not stop at the SMI entry:\n{text}");
    assert_eq!(register(&text, "in_smm", 0), 1, "{text}");
    assert!(text.contains("SMIs: 3\n"), "the SMI count did not grow:\n{text}");
    assert_eq!(register(&text, "in_smm", 1), 0, "{text}");
    // The built-in firmware's ping (firmware/src/sw.rs): "PONG" in RAX's low half.
    assert_eq!(register(&text, "rax", 0) & 0xffff_ffff, 0x504f_4e47, "{text}");
    assert!(text.lines().any(|l| l.contains("SMI    3") && l.contains("apm 0x01")), "{text}");
    assert_eq!(code, Some(0), "{err}");
}

/// `hbreak` is a host breakpoint too: it catches the SMI entry, where DR7 would be clear.
/// `monitor inventory` on firmware without an SMM core.
#[test]
fn hbreak_stops_in_smm() {
    let Some(Session { gdb: text, .. }) = gdb_session(&["hbreak *0x8000", "continue", "info registers rip in_smm", "monitor inventory", "kill"]) else {
        return;
    };
    // The built-in firmware has no edk2 SMM core: the inventory says so, beside SMRAM.
    assert!(text.contains("SMRAM 0xa0000-0xbffff"), "{text}");
    assert!(text.contains("no edk2 SMM core in SMRAM: inventory unavailable"), "{text}");
    // (gdb refuses to continue when the stub rejects a hardware breakpoint, Z1.)
    assert!(text.contains("Hardware assisted breakpoint 1 at 0x8000"), "{text}");
    assert!(text.contains("Breakpoint 1, 0x0000000000008000"), "{text}");
    assert_eq!(register(&text, "in_smm", 0), 1, "{text}");
}

/// `target remote | smmlab gdb --stdio`: gdb starts smmlab and speaks to it over a pipe; the
/// read-only registers refuse writes.
#[test]
fn gdb_over_stdio_reads_the_reset_state_and_refuses_read_only_writes() {
    if !testkit::package_command("gdb", "gdb") {
        return;
    }
    let pipe = format!("target remote | {} gdb --stdio", env!("CARGO_BIN_EXE_smmlab"));
    let args = ["-batch", "-nx", "-ex", &pipe, "-ex", "info registers rip cs cr0 in_smm", "-ex", "set $cr0 = 5", "-ex", "info registers cr0", "-ex", "set $rax = 0x1234", "-ex", "info registers rax", "-ex", "monitor smm", "-ex", "kill"];
    let mut gdb = Command::new("gdb").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start gdb");
    let mut out = gdb.stdout.take().expect("stdout");
    let mut err = gdb.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut text = String::new();
    let _ = out.read_to_string(&mut text);
    wait(&mut gdb, "gdb");
    text += &reader.join().expect("gdb stderr");
    assert_eq!(register(&text, "rip", 0), 0xfff0, "{text}");
    assert_eq!(register(&text, "cs", 0), 0xf000, "{text}");
    assert_eq!(register(&text, "cr0", 0), 0x6000_0010, "{text}");
    assert_eq!(register(&text, "in_smm", 0), 0, "{text}");
    assert!(text.contains("Could not write register"), "{text}");
    assert_eq!(register(&text, "cr0", 1), 0x6000_0010, "{text}");
    assert_eq!(register(&text, "rax", 0), 0x1234, "{text}");
    assert!(text.contains("in SMM: no"), "{text}");
    assert!(text.contains("speaking the remote protocol on stdin and stdout"), "smmlab's stderr reaches gdb's:\n{text}");
}

/// `watch` is a write watch on the machine's memory path: it sees the CPU's state save at SMM
/// entry and the relocation handler's write of the new SMBASE into the save state (Intel64
/// map: SMBASE at offset 0x7EF8 from SMBASE+0x8000, SDM vol. 3C table 32-3), stopping right
/// after the writing instruction.
#[test]
fn watch_stops_after_writes_in_smm() {
    let cmds = ["watch *(unsigned int *)0x3fef8", "continue", "info registers rip in_smm", "continue", "info registers rip in_smm", "delete", "monitor break-on-smi on", "continue", "info registers smbase", "kill"];
    let Some(Session { gdb: text, smmlab: err, .. }) = gdb_session(&cmds) else {
        return;
    };
    let news: Vec<u64> = text.lines().filter_map(|l| l.strip_prefix("New value = ")).map(|v| v.trim().parse().expect("a number")).collect();
    assert_eq!(news.len(), 2, "{text}");
    // The state save at SMI 1's entry writes the SMBASE in use; the CPU stands at the entry.
    assert_eq!(news[0], 0x30000, "{text}");
    assert_eq!(register(&text, "rip", 0), 0x8000, "{text}");
    assert_eq!(register(&text, "in_smm", 0), 1, "{text}");
    // The relocation handler's write, in SMM, past the entry; the next SMI enters there.
    assert_ne!(register(&text, "rip", 1), 0x8000, "{text}");
    assert_eq!(register(&text, "in_smm", 1), 1, "{text}");
    assert_eq!(register(&text, "smbase", 0), news[1], "{text}");
    assert!(err.contains("watched write of 4 bytes at 0x3fef8 from SMM"), "{err}");
}

/// `reverse-stepi` replays from the session's snapshot: back through the SMI's first
/// instructions (registers as they were), to its entry, then out of SMM to the instruction
/// boundary before the SMI; forward again, the same SMI is entered again.
#[test]
fn reverse_stepi_goes_back_across_smi_entry() {
    let cmds = [
        "reverse-stepi",
        "monitor break-on-smi on",
        "continue",
        "info registers rip rax",
        "stepi",
        "stepi",
        "info registers rip rax",
        "reverse-stepi",
        "reverse-stepi",
        "info registers rip rax in_smm",
        "reverse-stepi",
        "info registers rip in_smm",
        "stepi",
        "info registers rip in_smm",
        "monitor smm",
        "kill",
    ];
    let Some(Session { gdb: text, .. }) = gdb_session(&cmds) else {
        return;
    };
    // At reset there is nothing before.
    assert!(text.contains("No more reverse-execution history"), "{text}");
    let (rip, rax, in_smm) = (registers(&text, "rip"), registers(&text, "rax"), registers(&text, "in_smm"));
    assert_eq!(rip.len(), 5, "{text}");
    assert_eq!(rip[0], 0x8000, "{text}");
    assert_ne!(rip[1], 0x8000, "{text}");
    // Two steps back from two steps in: the entry again, with the entry's registers.
    assert_eq!((rip[2], rax[2], in_smm[0]), (0x8000, rax[0], 1), "{text}");
    assert_ne!(rax[1], rax[0], "the two steps changed no register; the test shows nothing:\n{text}");
    // One more: before the SMI, outside SMM.
    assert_eq!(in_smm[1], 0, "{text}");
    assert!(rip[3] > 0x10_0000, "not back in the OS's code: {:#x}\n{text}", rip[3]);
    // Forward: the same SMI (still SMI 1) enters again.
    assert_eq!((rip[4], in_smm[2]), (0x8000, 1), "{text}");
    assert!(text.contains("SMIs: 1\n"), "{text}");
}

/// `monitor inventory` on Debian's OVMF (package ovmf), 300 SMIs into its boot: edk2's SMM
/// core and its modules, read out of SMRAM as `smmlab smm inventory` reads them.
#[test]
fn monitor_inventory_lists_ovmfs_smm_modules() {
    if !testkit::package_file("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "ovmf") {
        return;
    }
    let skip_smis = "python [gdb.execute('continue', to_string=True) for _ in range(300)]";
    let Some(Session { gdb: text, smmlab: err, .. }) = gdb_session_with(&["--ovmf", "--pflash-snapshot"], &["monitor break-on-smi on", skip_smis, "monitor smm", "monitor inventory", "kill"]) else {
        return;
    };
    assert!(text.contains("SMIs: 300\n"), "{text}\n{err}");
    for module in ["PiSmmCore ", "PiSmmCpuDxeSmm ", "VariableSmm "] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(module) && l.contains("0x")), "no {module} in the inventory:\n{text}");
    }
    assert!(text.contains("gEfiSmmVariableProtocolGuid"), "{text}");
}

/// Bad `smmlab gdb` options are errors (status 2) before anything runs.
#[test]
fn bad_gdb_options_are_errors() {
    for (args, says) in [
        (&["gdb"][..], "--listen"),
        (&["gdb", "--stdio", "--debugcon", "-"][..], "would write into gdb's connection"),
        (&["gdb", "--listen", "1", "--gdb", "2"][..], "not --gdb"),
        (&["gdb", "--listen", "999.1.1.1:5"][..], "cannot listen on 999.1.1.1:5"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_smmlab")).args(args).stdin(Stdio::null()).output().expect("run smmlab");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `reverse-continue` stops where a forward continue would have, going back: the RSM of the
/// SMI before, then (with break-on-smi) that SMI's entry, then the start of the history.
#[test]
fn reverse_continue_goes_back_to_the_stops_before() {
    let cmds = [
        "monitor break-on-rsm on",
        "continue",
        "continue",
        "monitor smm",
        "reverse-continue",
        "info registers rip in_smm",
        "monitor smm",
        "monitor break-on-smi on",
        "reverse-continue",
        "info registers rip in_smm smbase",
        "reverse-continue",
        "info registers rip in_smm",
        "kill",
    ];
    let Some(Session { gdb: text, .. }) = gdb_session(&cmds) else {
        return;
    };
    let smis: Vec<&str> = text.lines().filter(|l| l.starts_with("SMIs: ")).collect();
    assert_eq!(smis, ["SMIs: 2", "SMIs: 1"], "{text}");
    let (rip, in_smm) = (registers(&text, "rip"), registers(&text, "in_smm"));
    // After SMI 1's RSM, outside SMM; then SMI 1's entry at the default SMBASE.
    assert_eq!(in_smm, [0, 1, 0], "{text}");
    assert_ne!(rip[0], 0x8000, "{text}");
    assert_eq!((rip[1], register(&text, "smbase", 0)), (0x8000, 0x30000), "{text}");
    // Nothing before that but the reset vector, where the history starts.
    assert!(text.contains("No more reverse-execution history"), "{text}");
    assert_eq!(rip[2], 0xfff0, "{text}");
}

/// `reverse-continue` to a breakpoint hit earlier: SMI 1's entry, from inside SMI 2.
#[test]
fn reverse_continue_stops_at_an_earlier_breakpoint() {
    let cmds = ["break *0x8000", "continue", "continue", "stepi", "stepi", "reverse-continue", "info registers rip in_smm smbase", "monitor smm", "reverse-continue", "info registers rip in_smm smbase", "monitor smm", "kill"];
    let Some(Session { gdb: text, .. }) = gdb_session(&cmds) else {
        return;
    };
    // First back to SMI 2's entry (the breakpoint's last hit), then to SMI 1's.
    assert_eq!(registers(&text, "rip"), [0x8000, 0x8000], "{text}");
    assert_eq!(registers(&text, "in_smm"), [1, 1], "{text}");
    assert_ne!(register(&text, "smbase", 0), 0x30000, "{text}");
    assert_eq!(register(&text, "smbase", 1), 0x30000, "{text}");
    let smis: Vec<&str> = text.lines().filter(|l| l.starts_with("SMIs: ")).collect();
    assert_eq!(smis, ["SMIs: 2", "SMIs: 1"], "{text}");
}

/// stepi across RSM: stepping SMI 2's handler one instruction at a time leaves SMM in the
/// interrupted program; one reverse-stepi stands on the RSM (0F AA) again, in SMM.
#[test]
fn stepi_across_rsm_and_back() {
    let step_out = "python\nwhile int(gdb.parse_and_eval('$in_smm')) != 0: gdb.execute('stepi', to_string=True)\nend";
    let cmds = ["monitor break-on-smi on", "continue", "continue", "monitor break-on-smi off", step_out, "info registers in_smm", "monitor smm", "reverse-stepi", "info registers in_smm", "x/2xb $cs_base + $rip", "kill"];
    let Some(Session { gdb: text, .. }) = gdb_session(&cmds) else {
        return;
    };
    assert_eq!(registers(&text, "in_smm"), [0, 1], "{text}");
    assert!(text.contains("SMIs: 2\n") && text.contains("in SMM: no"), "{text}");
    assert_eq!(examined(&text), [vec![0x0f, 0xaa]], "not at an RSM after stepping back:\n{text}");
}

/// `break` on an instruction in the middle of straight-line code (the relocated entry stub's
/// third instruction, after its jump to 0x8058): gdb's breakpoints are exact.
#[test]
fn break_stops_in_the_middle_of_straight_line_code() {
    let Some(Session { gdb: text, .. }) = gdb_session(&["break *0x8065", "continue", "info registers rip in_smm smbase", "kill"]) else {
        return;
    };
    assert!(text.contains("Breakpoint 1, 0x0000000000008065"), "{text}");
    assert_eq!(register(&text, "in_smm", 0), 1, "{text}");
    assert_ne!(register(&text, "smbase", 0), 0x30000, "{text}");
}

/// Runs `smmlab fuzz` with `target` (the subject and handler), seed 1, stopping at the first
/// finding, into a fresh directory `out`; the finding file `rule`-0.json, what it says, and
/// its instruction.
fn fuzz_finding(out: &str, target: &[&str], rule: &str) -> (std::path::PathBuf, serde_json::Value, u64) {
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(out);
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab"))
        .arg("fuzz")
        .args(target)
        .args(["--time", "60", "--seed", "1", "--stop-on-finding", "--out", out.to_str().unwrap()])
        .output()
        .expect("smmlab fuzz");
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stdout));
    let finding = out.join(format!("{rule}-0.json"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&finding).expect("the finding")).expect("JSON");
    let rip = v["rip"].as_u64().expect("the finding's rip");
    (finding, v, rip)
}

/// The planted driver `name`.efi, built at test time (None: a skip, or a failure under CI=true).
fn planted_driver(name: &str) -> Option<String> {
    let drivers = testkit::smm_drivers(&std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smm-drivers-gdb"))?;
    Some(drivers.join(format!("{name}.efi")).display().to_string())
}

#[test]
fn gdb_opens_a_fuzz_finding_stopped_at_the_instruction_that_broke_the_rule() {
    if !testkit::package_command("gdb", "gdb") {
        return;
    }
    let (finding, v, rip) = fuzz_finding("gdb-finding", &["--scenario", "bug-unchecked-pointer", "--handler", "all"], "SMM102");
    // "SMM wrote SMRAM at 0x7f80100 through a pointer...": the address the write goes to.
    let message = v["message"].as_str().unwrap();
    let target = message.split("SMRAM at 0x").nth(1).and_then(|t| t.split_whitespace().next()).map(|h| u64::from_str_radix(h, 16).unwrap()).expect("the written address");
    let Some(Session { gdb: text, .. }) = gdb_session_with(&["--finding", finding.to_str().unwrap()], &["info registers rip in_smm rax", "x/i $pc", "kill"]) else {
        return;
    };
    assert_eq!(register(&text, "rip", 0), rip, "{text}");
    assert_eq!(register(&text, "in_smm", 0), 1, "{text}");
    // The instruction about to write through the caller's pointer, and the pointer in RAX.
    assert!(text.contains(&format!("{rip:#x}:\tmov")), "{text}");
    assert_eq!(register(&text, "rax", 0), target, "{text}");
    // A missing finding is an error naming it.
    let o = Command::new(env!("CARGO_BIN_EXE_smmlab")).args(["gdb", "--stdio", "--finding", "/nonexistent/F.json"]).output().expect("smmlab gdb");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/F.json"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn gdb_opens_a_fuzz_finding_of_a_module_run_alone() {
    if !testkit::package_command("gdb", "gdb") {
        return;
    }
    let Some(driver) = planted_driver("comm_pointer") else { return };
    let (finding, _, rip) = fuzz_finding("gdb-module-finding", &["--module", &driver, "--handler", "99d0b2aa-ec71-4a07-ae94-44b51113a5f7"], "SMM102");
    let Some(Session { gdb: text, .. }) = gdb_session_with(&["--finding", finding.to_str().unwrap()], &["info registers rip in_smm", "x/i $pc", "stepi", "info registers rip", "continue"]) else {
        return;
    };
    assert_eq!(register(&text, "rip", 0), rip, "{text}");
    assert_eq!(register(&text, "in_smm", 0), 1, "{text}");
    assert!(text.contains(&format!("{rip:#x}:\tmov")), "{text}");
    assert!(register(&text, "rip", 1) > rip, "stepi goes on: {text}");
    // The handler returns, the SMI ends with RSM, and so does the run.
    assert!(text.contains("exited with code"), "{text}");
}

#[test]
fn gdb_on_a_call_out_finding_stops_at_the_boot_service_and_the_host_serves_it_on_stepi() {
    if !testkit::package_command("gdb", "gdb") {
        return;
    }
    let Some(driver) = planted_driver("callout") else { return };
    let (finding, _, rip) = fuzz_finding("gdb-callout-finding", &["--module", &driver, "--handler", "D9398575-3EA0-47FC-B431-3D458FE47AB4"], "SMM101");
    let Some(Session { gdb: text, .. }) = gdb_session_with(&["--finding", finding.to_str().unwrap()], &["info registers rip rax in_smm", "x/i $pc", "stepi", "info registers rip rax", "continue"]) else {
        return;
    };
    // SMM stands at the boot service's code, outside SMRAM: the host's RET stub for it.
    assert_eq!(register(&text, "rip", 0), rip, "{text}");
    assert_eq!(register(&text, "in_smm", 0), 1, "{text}");
    assert!(text.contains(&format!("{rip:#x}:\tret")), "{text}");
    // stepi: the host serves the call (its status in RAX, which a bare RET would not change)
    // and the RET goes back into the handler.
    assert_ne!(register(&text, "rax", 1), register(&text, "rax", 0), "{text}");
    assert!(register(&text, "rip", 1) != rip, "{text}");
    assert!(text.contains("exited with code"), "{text}");
}
