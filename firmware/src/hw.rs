//! The modelled hardware the built-in firmware drives beyond QEMU's q35: SMI status and enable
//! bits of the ICH9, the MCH's ECC registers, the hardware monitor (temperature and fan), the
//! UHCI legacy-keyboard block, the ICH9 I/O trap registers and the flash write protection.
//! `docs/builtin-platform.md` is the specification; the Intel documents are cited there.

use crate::io::{inb, outb};
use crate::layout::PMBASE;
use crate::pci;

/// PM1_CNT: SLP_TYP (12:10), SLP_EN (13); S5 is SLP_TYP 7 (ICH9 13.8.3.3).
pub const PM1_CNT: u16 = PMBASE + 0x04;
pub const PM1_CNT_S5: u32 = 7 << 10;
pub const PM1_CNT_SLP_EN: u32 = 1 << 13;
/// The ACPI PM timer, 3.579545 MHz, 24 bits (ICH9 13.8.3.4).
pub const PM1_TMR: u16 = PMBASE + 0x08;
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// SMI_EN / SMI_STS bits beyond APM (ICH9 13.8.3.1/2).
pub const SMI_LEGACY_USB: u32 = 1 << 3;
pub const SMI_SWSMI_TMR: u32 = 1 << 6;
pub const SMI_GPI: u32 = 1 << 10;
pub const SMI_TCO: u32 = 1 << 13;
pub const SMI_MONITOR: u32 = 1 << 21;

/// ALT_GP_SMI_EN / ALT_GP_SMI_STS (16 bits each); GPI 1 is the hardware monitor's SMI#.
pub const ALT_GP_SMI_EN: u16 = PMBASE + 0x38;
pub const ALT_GP_SMI_STS: u16 = PMBASE + 0x3a;
pub const GPI_HWMON: u16 = 1 << 1;

/// TCO1_STS (TCOBASE = PMBASE + 0x60): BIOSWR_STS bit 8, DMISMI_STS bit 10.
pub const TCO1_STS: u16 = PMBASE + 0x64;
pub const TCO1_STS_BIOSWR: u16 = 1 << 8;
pub const TCO1_STS_DMISMI: u16 = 1 << 10;

/// GEN_PMCON_3 (LPC 0xA4): SWSMI_RATE_SEL bits 7:6; 01 = 16 ms.
pub const LPC_GEN_PMCON_3: u8 = 0xa4;
pub const SWSMI_RATE_16MS: u16 = 1 << 6;
pub const SWSMI_RATE_MASK: u16 = 3 << 6;
/// BIOS_CNTL.BIOSWE (LPC 0xDC bit 0).
pub const BIOS_CNTL_BIOSWE: u8 = 1 << 0;
/// RCBA (LPC 0xF0): base 31:14, enable bit 0.
pub const LPC_RCBA: u8 = 0xf0;
pub const RCBA_BASE: u64 = 0xfed1_c000;

/// MCH ECC registers (3 Series MCH 5.1; DEAP/CECNT are smmlab's own).
pub const MCH_ERRSTS: u8 = 0xc8;
pub const MCH_SMICMD: u8 = 0xcc;
pub const MCH_DEAP: u8 = 0xd0;
pub const MCH_CECNT: u8 = 0xd4;
pub const ERRSTS_DSERR: u16 = 1 << 0;
pub const ERRSTS_DMERR: u16 = 1 << 1;

/// The hardware monitor: index and data ports, registers.
pub const HWMON_INDEX: u16 = 0x295;
pub const HWMON_DATA: u16 = 0x296;
pub const HWMON_CONFIG: u8 = 0x00;
pub const HWMON_CONFIG_START: u8 = 1 << 0;
pub const HWMON_CONFIG_SMI_EN: u8 = 1 << 1;
pub const HWMON_INT_STS: u8 = 0x01;
pub const HWMON_INT_HIGH: u8 = 1 << 0;
pub const HWMON_INT_CRIT: u8 = 1 << 1;
pub const HWMON_TEMP: u8 = 0x10;
pub const HWMON_HIGH: u8 = 0x11;
pub const HWMON_CRIT: u8 = 0x12;
pub const HWMON_FAN_DUTY: u8 = 0x20;
pub const HWMON_FAN_RPM_LO: u8 = 0x21;
pub const HWMON_FAN_RPM_HI: u8 = 0x22;

pub fn hwmon_read(reg: u8) -> u8 {
    outb(HWMON_INDEX, reg);
    inb(HWMON_DATA)
}

pub fn hwmon_write(reg: u8, v: u8) {
    outb(HWMON_INDEX, reg);
    outb(HWMON_DATA, v);
}

pub fn fan_rpm() -> u16 {
    hwmon_read(HWMON_FAN_RPM_LO) as u16 | (hwmon_read(HWMON_FAN_RPM_HI) as u16) << 8
}

/// The UHCI function (00:1D.0) and its legacy-support register.
pub const UHCI_DEV: u8 = 0x1d;
pub const UHCI_BAR4: u8 = 0x20;
pub const UHCI_LEGSUP: u8 = 0xc0;
pub const LEGSUP_TRAPBY60R: u16 = 1 << 0;
pub const LEGSUP_TRAPBY60W: u16 = 1 << 1;
pub const LEGSUP_TRAPBY64R: u16 = 1 << 2;
pub const LEGSUP_TRAPBY64W: u16 = 1 << 3;
pub const LEGSUP_USBSMIEN: u16 = 1 << 4;
pub const LEGSUP_TBY60R: u16 = 1 << 8;
pub const LEGSUP_TBY60W: u16 = 1 << 9;
pub const LEGSUP_TBY64R: u16 = 1 << 10;
pub const LEGSUP_TBY64W: u16 = 1 << 11;
pub const LEGSUP_USBIRQS: u16 = 1 << 12;
pub const LEGSUP_TRAP_STS: u16 = LEGSUP_TBY60R | LEGSUP_TBY60W | LEGSUP_TBY64R | LEGSUP_TBY64W;
/// The I/O base the firmware gives BAR4; REPORT_STS and the report window in it.
pub const UHCI_IO_BASE: u16 = 0xc000;
pub const UHCI_REPORT_STS: u16 = UHCI_IO_BASE + 0x18;
pub const UHCI_REPORT: u16 = UHCI_IO_BASE + 0x20;

/// ICH9 I/O trap registers in RCBA (ICH9 10.1).
pub const RCBA_TRSR: u64 = 0x1e00;
pub const RCBA_TRCR: u64 = 0x1e10;
pub const RCBA_TWDR: u64 = 0x1e18;
pub const RCBA_IOTR0: u64 = 0x1e80;
pub const IOTR_TRSE: u64 = 1 << 0;
pub const IOTR_RWM: u64 = 1 << 49;

/// The emulated COM2 (a 16550 the board does not have) and its registers.
pub const COM2: u16 = 0x2f8;
pub const UART_THR: u16 = 0;
pub const UART_LSR: u16 = 5;
pub const UART_SCR: u16 = 7;
pub const UART_LSR_THRE_TEMT: u8 = 0x60;

/// The flash sector that holds the firmware's settings.
pub const SETTINGS_FLASH: u64 = 0xfffe_f000;
pub const SETTINGS_FLASH_SIZE: u64 = 0x1000;

pub fn rcba_read32(off: u64) -> u32 {
    // SAFETY: RCBA is an identity-mapped MMIO window the firmware enabled.
    unsafe { core::ptr::read_volatile((RCBA_BASE + off) as *const u32) }
}

pub fn rcba_write32(off: u64, v: u32) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile((RCBA_BASE + off) as *mut u32, v) }
}

pub fn rcba_write64(off: u64, v: u64) {
    rcba_write32(off, v as u32);
    rcba_write32(off + 4, (v >> 32) as u32);
}

/// Reads the PM timer (24 bits).
pub fn pm_timer() -> u32 {
    crate::io::inl(PM1_TMR) & 0x00ff_ffff
}

/// Waits `us` microseconds on the PM timer (as firmware waits for flash program/erase).
pub fn delay_us(us: u64) {
    let ticks = us * PM_TIMER_HZ / 1_000_000;
    let mut last = pm_timer();
    let mut waited = 0u64;
    while waited < ticks {
        let now = pm_timer();
        waited += (now.wrapping_sub(last) & 0x00ff_ffff) as u64;
        last = now;
    }
}

/// Whether the platform has the modelled hardware (the UHCI function answers).
pub fn present() -> bool {
    pci::read16(UHCI_DEV, 0, 0) == 0x8086
}
