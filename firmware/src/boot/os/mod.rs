//! The demo OS: 64-bit, CPL0, the firmware's identity paging. It looks at the SMM protections
//! from outside SMM (reading the registers back as chipsec does), calls the SW SMI services and
//! exits through isa-debug-exit: 0 if everything held, 1 otherwise.

mod devices;
mod intr;
mod rootkit;
mod services;
mod workload;

use firmware::con::{dec, hex16, hex32, hex64, hex8, puts};
use firmware::layout::*;
use firmware::scenario;
use firmware::sw::{self, COMM_HEADER_SIZE};
use firmware::{hw, io, pci};

/// A communication buffer in OS memory.
const COMM_BUF: u64 = 0x20_0000;

struct Checks {
    failed: u32,
}

impl Checks {
    fn check(&mut self, ok: bool) {
        puts(if ok { " [ok]\n" } else { " [FAIL]\n" });
        if !ok {
            self.failed += 1;
        }
    }
}

/// Writes a communication buffer at `at`: GUID, MessageLength, message.
pub(crate) fn write_comm(at: u64, guid: &[u8; 16], len: u64, msg: &[u8]) {
    // SAFETY: identity-mapped OS RAM.
    unsafe {
        core::ptr::copy_nonoverlapping(guid.as_ptr(), at as *mut u8, 16);
        core::ptr::write_unaligned((at + 16) as *mut u64, len);
        core::ptr::copy_nonoverlapping(msg.as_ptr(), (at + COMM_HEADER_SIZE) as *mut u8, msg.len());
    }
}

pub(crate) fn read_u64(at: u64) -> u64 {
    // SAFETY: identity-mapped OS RAM.
    unsafe { core::ptr::read_volatile(at as *const u64) }
}

/// Prints the e820 map the firmware handed over.
fn show_e820() {
    let n = read_u64(E820_COUNT).min(E820_MAX as u64);
    for k in 0..n {
        // SAFETY: the boot information block is reserved RAM the firmware filled.
        let e = unsafe { core::ptr::read_unaligned((E820_COUNT + 8 + k * 24) as *const E820Entry) };
        puts("os: e820 ");
        hex64(e.base);
        puts("-");
        hex64(e.base + e.length - 1);
        puts(if e.kind == E820_USABLE { " usable\n" } else { " reserved\n" });
    }
}

pub fn main(intel: bool, scn: u64) -> ! {
    let mut c = Checks { failed: 0 };
    puts("os: started (64-bit, CPL0)\n");
    show_e820();

    // What chipsec's common.smm, smm_dma and bios_smi read.
    let smram = pci::read8(0, 0, MCH_SMRAM);
    puts("os: SMRAM=");
    hex8(smram);
    puts(" (D_LCK set, D_OPEN clear)");
    c.check(smram & SMRAM_D_LCK != 0 && smram & SMRAM_D_OPEN == 0);
    pci::write8(0, 0, MCH_SMRAM, smram | SMRAM_D_OPEN);
    let after = pci::read8(0, 0, MCH_SMRAM);
    puts("os: SMRAM after writing D_OPEN=");
    hex8(after);
    c.check(after == smram);

    let tseg = pci::read32(0, 0, MCH_TSEGMB) as u64 & !0xfffff;
    let v = io::peek32(tseg);
    puts("os: TSEG ");
    hex32(tseg as u32);
    puts(" reads ");
    hex32(v);
    puts(" from outside SMM");
    c.check(v == 0xffff_ffff);
    io::poke32(tseg, 0x9090_9090);
    let v = io::peek32(tseg);
    puts("os: TSEG after writing 0x90909090 reads ");
    hex32(v);
    c.check(v == 0xffff_ffff);

    if intel {
        let (base, mask) = (io::rdmsr(IA32_SMRR_PHYSBASE), io::rdmsr(IA32_SMRR_PHYSMASK));
        puts("os: SMRR base=");
        hex32(base as u32);
        puts(" mask=");
        hex32(mask as u32);
        puts(" covers TSEG");
        let size = (!(mask & 0xffff_f000) & 0xffff_ffff) + 1;
        c.check(mask & SMRR_VALID != 0 && base & 0xffff_f000 == tseg && size == TSEG_SIZE);
    }

    let pmcon = pci::read16(LPC_DEV, 0, LPC_GEN_PMCON_1);
    puts("os: GEN_PMCON_1=");
    hex16(pmcon);
    puts(" (SMI_LOCK set)");
    c.check(pmcon & GEN_PMCON_1_SMI_LOCK != 0);
    let smi_en = io::inl(SMI_EN);
    io::outl(SMI_EN, smi_en & !SMI_EN_GBL_SMI_EN);
    let after = io::inl(SMI_EN);
    puts("os: SMI_EN=");
    hex32(smi_en);
    puts(", after clearing GBL_SMI_EN ");
    hex32(after);
    c.check(after & SMI_EN_GBL_SMI_EN != 0 && after & SMI_EN_APMC_EN != 0);

    // The ping service.
    for k in 1..=3u64 {
        let rax = sw::call(sw::SW_PING, 0);
        puts("os: ping ");
        dec(k);
        puts(" -> rax=");
        hex64(rax);
        c.check(rax == sw::PING_REPLY | k << 32);
    }

    // The communication buffer: a good request...
    let msg = b"smmlab: hash me";
    write_comm(COMM_BUF, &sw::GUID_HASH, msg.len() as u64, msg);
    let st = sw::call(sw::SW_COMMUNICATE, COMM_BUF);
    let (len, hash) = (read_u64(COMM_BUF + 16), read_u64(COMM_BUF + COMM_HEADER_SIZE));
    puts("os: comm hash -> status=");
    hex64(st);
    puts(" len=");
    dec(len);
    puts(" hash=");
    hex64(hash);
    c.check(st == sw::EFI_SUCCESS && len == 8 && hash == sw::fnv1a(msg));

    // ... an unknown GUID ...
    let other = [0x11u8; 16];
    write_comm(COMM_BUF, &other, 4, b"abcd");
    let st = sw::call(sw::SW_COMMUNICATE, COMM_BUF);
    puts("os: comm unknown GUID -> status=");
    hex64(st);
    c.check(st == sw::EFI_NOT_FOUND);

    // ... a buffer inside SMRAM (the confused-deputy attack, PI vol. 4 / chipsec smm_ptr) ...
    let st = sw::call(sw::SW_COMMUNICATE, tseg + 0x100);
    puts("os: comm buffer in SMRAM -> status=");
    hex64(st);
    c.check(st == sw::EFI_ACCESS_DENIED);

    // ... a buffer just below TSEG whose message runs into it (low-SMRAM corruption) ...
    let below = tseg - 0x40;
    write_comm(below, &sw::GUID_HASH, 0x100, b"");
    let st = sw::call(sw::SW_COMMUNICATE, below);
    puts("os: comm buffer running into SMRAM -> status=");
    hex64(st);
    c.check(st == sw::EFI_ACCESS_DENIED);

    // ... and an oversized message.
    write_comm(COMM_BUF, &sw::GUID_HASH, 1 << 20, b"");
    let st = sw::call(sw::SW_COMMUNICATE, COMM_BUF);
    puts("os: comm oversized message -> status=");
    hex64(st);
    c.check(st == sw::EFI_BAD_BUFFER_SIZE);

    // The firmware's set-up SMI is closed after ready-to-lock.
    let st = sw::call(sw::SW_READY_TO_LOCK, 0);
    puts("os: ready-to-lock again -> status=");
    hex64(st);
    c.check(st == sw::EFI_ACCESS_DENIED);

    if hw::present() {
        uses_of_smm(&mut c, scn, tseg);
    }

    if c.failed == 0 {
        puts("os: all checks passed, exiting with 0\n");
        firmware::exit(0)
    }
    puts("os: ");
    dec(c.failed as u64);
    puts(" checks failed, exiting with 1\n");
    firmware::exit(1)
}

/// The OS's life on the built-in platform: the timer, the services SMM provides, the devices
/// it emulates, a workload that measures what SMIs cost, and (in the rootkit scenarios) an
/// attack on SMRAM. Which parts run, and for how long, depends on the scenario.
fn uses_of_smm(c: &mut Checks, scn: u64, tseg: u64) {
    intr::start();
    let tsc_mhz = workload::calibrate_tsc_mhz();
    puts("os: timer interrupt at 1 kHz (8254 counter 0, IRQ 0), TSC ");
    dec(tsc_mhz);
    puts(" MHz\n");
    let all = scn == scenario::DEFAULT;

    if all || scn == scenario::CONFIGURATION {
        let (st, _) = services::settings(sw::SETTINGS_GET, sw::SETTING_FAN_MIN_DUTY, 0);
        services::show("get fan-min-duty", st, 0);
        c.check(st == sw::EFI_SUCCESS || st == sw::EFI_NOT_FOUND);
        let (st, _) = services::settings(sw::SETTINGS_SET, sw::SETTING_FAN_MIN_DUTY, 40);
        services::show("set fan-min-duty 40", st, 40);
        c.check(st == sw::EFI_SUCCESS);
        let (st, v) = services::settings(sw::SETTINGS_GET, sw::SETTING_FAN_MIN_DUTY, 0);
        services::show("get fan-min-duty", st, v);
        c.check(st == sw::EFI_SUCCESS && v == 40);
        let (st, _) = services::settings(sw::SETTINGS_SET, sw::SETTING_FAN_MIN_DUTY, 150);
        services::show("set fan-min-duty 150 (invalid)", st, 150);
        c.check(st == sw::EFI_INVALID_PARAMETER);
        if scn == scenario::CONFIGURATION {
            let (st, _) = services::settings(sw::SETTINGS_SET, sw::SETTING_ASSET_TAG, 0x5eed_1234);
            services::show("set asset-tag", st, 0x5eed_1234);
            c.check(st == sw::EFI_SUCCESS);
        }
        let held = services::attack_flash();
        puts("os: flash protected from the OS");
        c.check(held);
    }

    if all || scn == scenario::HARDWARE_EMULATION {
        let found = hw_com2_probe();
        c.check(found);
        if found {
            let lines: &[&[u8]] = if scn == scenario::HARDWARE_EMULATION {
                &[b"hello from the OS on COM2\n", b"this UART exists only in SMM\n", b"every register access is an SMI\n"]
            } else {
                &[b"hello from the OS on COM2\n"]
            };
            for l in lines {
                let n = devices::com2_write(l);
                puts("os: com2: sent ");
                dec(n as u64);
                puts(" bytes");
                c.check(n == l.len());
            }
        }
    }

    if all || scn == scenario::KEYBOARD {
        let mut line = [0u8; 64];
        let n = devices::read_line(&mut line, if all { 150 } else { 1000 });
        puts("os: keyboard line \"");
        for &b in &line[..n] {
            io::outb(PORT_DEBUGCON, b);
        }
        puts("\"");
        c.check(n > 0);
    }

    if scn == scenario::ROOTKIT_UNLOCKED || scn == scenario::ROOTKIT_LOCKED {
        let installed = rootkit::install(tseg);
        let active = rootkit::probe(tseg);
        puts("os: rootkit installed ");
        puts(if installed { "yes" } else { "no" });
        puts(", active ");
        puts(if active { "yes" } else { "no" });
        // The OS's check: nobody may gain privileges through SMM.
        c.check(!active);
    }

    let ms = match scn {
        scenario::THERMAL_RUNAWAY => 2000,
        scenario::MEMORY_ERRORS => 80,
        s if s == scenario::DEFAULT => 60,
        _ => 20,
    };
    puts("os: workload ");
    dec(ms);
    puts(" ms, hwlat threshold 1 us, CPU ");
    dec(hw::hwmon_read(hw::HWMON_TEMP) as u64);
    puts(" C\n");
    let m = workload::run(ms, tsc_mhz, 1);
    workload::report(&m, ms, 1);
    puts("os: memory errors seen: ");
    dec(m.corrected);
    puts(" corrected, ");
    dec(m.uncorrectable);
    puts(" uncorrectable, ");
    dec(m.retired_count as u64);
    puts(" pages taken out of service\n");
    // Over the OS's whole life, the SMIs before the workload included (a 3 ms flash update
    // outlasts two ticks: the 8259 holds one request, the others are lost).
    let (elapsed, received) = intr::since_start(tsc_mhz);
    puts("os: timer since the OS started: ");
    dec(elapsed);
    puts(" ticks elapsed, ");
    dec(received);
    puts(" received, ");
    dec(elapsed.saturating_sub(received));
    puts(" lost\n");
    puts("os: CPU ");
    dec(hw::hwmon_read(hw::HWMON_TEMP) as u64);
    puts(" C, fan duty ");
    dec(hw::hwmon_read(hw::HWMON_FAN_DUTY) as u64);
    puts("%, ");
    dec(hw::fan_rpm() as u64);
    puts(" rpm\n");
    // SAFETY: masks interrupts before the exit.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
}

fn hw_com2_probe() -> bool {
    let found = devices::com2_present();
    puts("os: COM2 at 0x2f8: scratch register test ");
    puts(if found { "passed (a 16550 answers)" } else { "failed" });
    found
}
