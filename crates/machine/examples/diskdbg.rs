use machine::*;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = if args[1] == "pc" { BoardKind::Pc } else { BoardKind::Q35 };
    let rom = load_rom(std::path::Path::new("/usr/share/seabios/bios-256k.bin")).unwrap();
    let mut config = MachineConfig::default();
    config.model = cpu::CpuModel { vendor: cpu::cpuid::Vendor::Amd, long_mode: true, tsc_hz: 1_000_000_000 };
    let mut m = Machine::new(kind, config, rom).unwrap();
    m.attach_disk(devices::disk::Disk::open(std::path::Path::new(&args[2])).unwrap()).unwrap();
    let n: u64 = args[3].parse().unwrap();
    if let Some(skip) = args.get(5) { m.run(skip.parse().unwrap()); }
    for _ in 0..n {
        let s = m.run(args[4].parse().unwrap());
        if m.cpu.rip == 0xea661 && false { let r = &m.cpu.regs; let esp = r[4] as usize; let ram = match &mut m.board { board::Board::Pc(p) => p.ram.as_slice().to_vec(), _ => vec![] }; let st: Vec<u32> = (0..12).map(|k| u32::from_le_bytes(ram[esp+4*k..esp+4*k+4].try_into().unwrap())).collect(); println!("eax={:#x} ecx={:#x} edx={:#x} esp={:#x} stack={:x?}", r[0], r[1], r[2], esp, st); break; }
        if m.cpu.rip == 0xa8db { if let board::Board::Pc(p) = &m.board { let r = p.ram.as_slice(); let v: Vec<String> = (0..0x20).filter(|i| u32::from_le_bytes(r[i*4..i*4+4].try_into().unwrap()) == 0xf000d42e).map(|i| format!("{i:#x}")).collect(); println!("IVT->d42e: {v:?}"); } println!("AT a8db ecx={:#x} ebx={:#x} cs={:?}", m.cpu.regs[1], m.cpu.regs[3], m.cpu.seg[cpu::sreg::CS]); }
        if let board::Board::Pc(p) = &mut m.board { println!("lapic pv={:?} extint={} picintr={} lapicdl={:?} now={:?}", p.lapic.pending_vector(), p.lapic.accepts_extint(), p.legacy.pics.intr(), p.lapic.next_deadline(), p.now()); }
        println!("{:?} cs={:04x} rip={:#x} mode={} smis={}", s.exit, m.cpu.seg[cpu::sreg::CS].selector, m.cpu.rip, m.cpu.mode_name(), s.smis);
        if s.exit != ExitReason::InstructionLimit { break; }
    }
    let out = String::from_utf8_lossy(&m.board.debugcon().output).to_string();
    println!("{}", &out[out.len().saturating_sub(300)..]);
}
