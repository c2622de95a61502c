//! The boot services an SMM driver's entry point and libraries call (UEFI 2.10 §7; offsets in
//! EFI_BOOT_SERVICES from `MdePkg/Include/Uefi/UefiSpec.h`): memory from the DXE heap, the DXE
//! protocol database, events that never fire (nothing runs after the entry point in DXE),
//! and logged stubs for the rest.

use super::{read_guid, read_u64, write, write_u64, Env, Flow, Frame, Served};
use crate::efi;
use fwimage::Guid;
use machine::Machine;

/// EFI_BOOT_SERVICES' function members: (offset, name, arguments).
pub const FUNCTIONS: &[(u64, &str, usize)] = &[
    (0x18, "RaiseTPL", 1),
    (0x20, "RestoreTPL", 1),
    (0x28, "AllocatePages", 4),
    (0x30, "FreePages", 2),
    (0x38, "GetMemoryMap", 5),
    (0x40, "AllocatePool", 3),
    (0x48, "FreePool", 1),
    (0x50, "CreateEvent", 5),
    (0x58, "SetTimer", 3),
    (0x60, "WaitForEvent", 3),
    (0x68, "SignalEvent", 1),
    (0x70, "CloseEvent", 1),
    (0x78, "CheckEvent", 1),
    (0x80, "InstallProtocolInterface", 4),
    (0x88, "ReinstallProtocolInterface", 4),
    (0x90, "UninstallProtocolInterface", 3),
    (0x98, "HandleProtocol", 3),
    (0xa8, "RegisterProtocolNotify", 3),
    (0xb0, "LocateHandle", 5),
    (0xb8, "LocateDevicePath", 3),
    (0xc0, "InstallConfigurationTable", 2),
    (0xc8, "LoadImage", 6),
    (0xd0, "StartImage", 3),
    (0xd8, "Exit", 4),
    (0xe0, "UnloadImage", 1),
    (0xe8, "ExitBootServices", 2),
    (0xf0, "GetNextMonotonicCount", 1),
    (0xf8, "Stall", 1),
    (0x100, "SetWatchdogTimer", 4),
    (0x108, "ConnectController", 4),
    (0x110, "DisconnectController", 3),
    (0x118, "OpenProtocol", 6),
    (0x120, "CloseProtocol", 4),
    (0x128, "OpenProtocolInformation", 4),
    (0x130, "ProtocolsPerHandle", 3),
    (0x138, "LocateHandleBuffer", 5),
    (0x140, "LocateProtocol", 3),
    (0x148, "InstallMultipleProtocolInterfaces", 6),
    (0x150, "UninstallMultipleProtocolInterfaces", 6),
    (0x158, "CalculateCrc32", 3),
    (0x160, "CopyMem", 3),
    (0x168, "SetMem", 3),
    (0x170, "CreateEventEx", 6),
];

/// sizeof(EFI_BOOT_SERVICES).
pub const SIZE: u64 = 0x178;

/// TPL_APPLICATION, what RaiseTPL reports as the previous level.
const TPL_APPLICATION: u64 = 4;

impl Env {
    pub(super) fn boot(&mut self, m: &mut Machine, f: &Frame, off: u64) -> Served {
        let (fname, nargs) = FUNCTIONS.iter().find(|x| x.0 == off).map_or(("?", 4), |x| (x.1, x.2));
        let name = format!("gBS->{fname}");
        let mut guid: Option<Guid> = None;
        let st = match off {
            0x18 => TPL_APPLICATION,
            0x20 | 0x30 | 0x48 | 0x68 | 0x70 | 0xf8 | 0x100 => efi::SUCCESS,
            0x28 => {
                let (kind, pages, out) = (f.arg(0), f.arg(2), f.arg(3));
                let max = (kind == 1).then(|| read_u64(m, out));
                match if kind == 2 || out == 0 { None } else { self.dxe.pages(pages, 0x1000, max) } {
                    Some(p) => {
                        write_u64(m, out, p);
                        efi::SUCCESS
                    }
                    None if out == 0 => efi::INVALID_PARAMETER,
                    None => efi::OUT_OF_RESOURCES,
                }
            }
            0x38 => self.memory_map(m, f),
            0x40 => {
                let (size, out) = (f.arg(1), f.arg(2));
                match (out, self.dxe.pool(size)) {
                    (0, _) => efi::INVALID_PARAMETER,
                    (_, Some(p)) => {
                        write_u64(m, out, p);
                        efi::SUCCESS
                    }
                    (_, None) => efi::OUT_OF_RESOURCES,
                }
            }
            // Events: a handle the module can close; their notifications never run, as nothing
            // of DXE runs after the entry point.
            0x50 | 0x170 => {
                let out = if off == 0x50 { f.arg(4) } else { f.arg(5) };
                if off == 0x170 {
                    guid = read_guid(m, f.arg(4));
                }
                let ev = self.dxe.pool(0x20).expect("room for an event");
                write_u64(m, out, ev);
                efi::SUCCESS
            }
            0x80 => {
                guid = read_guid(m, f.arg(1));
                let (hp, iface) = (f.arg(0), f.arg(3));
                let caller = f.caller();
                match guid {
                    Some(g) => match self.install(m, false, hp, g, iface, caller) {
                        Ok(_) => efi::SUCCESS,
                        Err(st) => st,
                    },
                    None => efi::INVALID_PARAMETER,
                }
            }
            0x98 => {
                let (g, st) = self.handle_protocol(m, f, false);
                guid = g;
                st
            }
            // OpenProtocol(Handle, Protocol, Interface*, ...): as HandleProtocol.
            0x118 => {
                let (g, st) = self.handle_protocol(m, f, false);
                guid = g;
                st
            }
            0x120 => efi::SUCCESS,
            0xa8 => {
                guid = read_guid(m, f.arg(0));
                let reg = f.arg(2);
                let token = self.dxe.pool(0x10).expect("room for a registration");
                write_u64(m, reg, token);
                efi::SUCCESS
            }
            0xb0 => {
                let (g, st) = self.locate_handle(m, f, false);
                guid = g;
                st
            }
            0xc0 => {
                guid = read_guid(m, f.arg(0));
                let table = f.arg(1);
                match guid {
                    Some(g) => {
                        self.st_config.retain(|e| e.0 != g);
                        if table != 0 {
                            self.st_config.push((g, table));
                        }
                        crate::platform::write_st_config(m, &self.st_config);
                        efi::SUCCESS
                    }
                    None => efi::INVALID_PARAMETER,
                }
            }
            0xf0 => {
                let v = self.monotonic();
                write_u64(m, f.arg(0), v);
                efi::SUCCESS
            }
            0x138 => {
                let (search, proto, count, buf) = (f.arg(0), f.arg(1), f.arg(3), f.arg(4));
                guid = read_guid(m, proto);
                let handles = match search {
                    0 => self.dxe_db.handles_with(None),
                    2 => self.dxe_db.handles_with(guid.as_ref()),
                    _ => Vec::new(),
                };
                if handles.is_empty() || count == 0 || buf == 0 {
                    efi::NOT_FOUND
                } else {
                    let p = self.dxe.pool(8 * handles.len() as u64).expect("room for handles");
                    let bytes: Vec<u8> = handles.iter().flat_map(|h| h.to_le_bytes()).collect();
                    write(m, p, &bytes);
                    write_u64(m, count, handles.len() as u64);
                    write_u64(m, buf, p);
                    efi::SUCCESS
                }
            }
            0x140 => {
                let (g, st) = self.locate_protocol(m, f, false);
                guid = g;
                st
            }
            0x148 => {
                // (Handle*, GUID*, Interface, ..., NULL): pairs until a NULL GUID.
                let hp = f.arg(0);
                let caller = f.caller();
                let mut st = efi::SUCCESS;
                for i in 0..16 {
                    let gp = f.arg(1 + 2 * i);
                    let Some(g) = read_guid(m, gp) else { break };
                    guid.get_or_insert(g);
                    let iface = f.arg(2 + 2 * i);
                    if let Err(e) = self.install(m, false, hp, g, iface, caller) {
                        st = e;
                        break;
                    }
                }
                st
            }
            0x160 => {
                let (dst, src, len) = (f.arg(0), f.arg(1), f.arg(2));
                let data = m.read_phys(src, len.min(16 << 20) as usize, true);
                write(m, dst, &data);
                efi::SUCCESS
            }
            0x168 => {
                let (dst, len, v) = (f.arg(0), f.arg(1), f.arg(2));
                write(m, dst, &vec![v as u8; len.min(16 << 20) as usize]);
                efi::SUCCESS
            }
            _ => efi::UNSUPPORTED,
        };
        (name, nargs, guid, Flow::Return(st))
    }

    /// GetMemoryMap(Size*, Map, MapKey*, DescriptorSize*, DescriptorVersion*): conventional
    /// memory below TSEG but for the communication buffer, which is runtime-services data (as
    /// the OS-side drivers allocate theirs: SmmMemLib, once SMM is locked, accepts a buffer
    /// only in reserved, ACPI NVS or runtime-services data memory, edk2
    /// MdePkg/Library/SmmMemLib), and TSEG itself reserved; 48-byte descriptors, version 1.
    fn memory_map(&mut self, m: &mut Machine, f: &Frame) -> u64 {
        use crate::layout::{COMM_BUFFER, COMM_BUFFER_SIZE, TSEG_BASE, TSEG_SIZE};
        const DESC: u64 = 48;
        const CONVENTIONAL: u64 = 7;
        const RUNTIME_DATA: u64 = 6;
        const RESERVED: u64 = 0;
        let (size_ptr, map, key, dsize, dver) = (f.arg(0), f.arg(1), f.arg(2), f.arg(3), f.arg(4));
        let comm_end = COMM_BUFFER + COMM_BUFFER_SIZE;
        let regions = [(CONVENTIONAL, 0u64, COMM_BUFFER), (RUNTIME_DATA, COMM_BUFFER, COMM_BUFFER_SIZE), (CONVENTIONAL, comm_end, TSEG_BASE - comm_end), (RESERVED, TSEG_BASE, TSEG_SIZE)];
        let need = DESC * regions.len() as u64;
        let have = read_u64(m, size_ptr);
        write_u64(m, size_ptr, need);
        write_u64(m, dsize, DESC);
        if dver != 0 {
            write(m, dver, &1u32.to_le_bytes());
        }
        if have < need || map == 0 {
            return efi::BUFFER_TOO_SMALL;
        }
        let mut bytes = Vec::new();
        for (ty, start, len) in regions {
            let mut d = [0u8; DESC as usize];
            d[0..4].copy_from_slice(&(ty as u32).to_le_bytes());
            d[8..16].copy_from_slice(&start.to_le_bytes());
            d[24..32].copy_from_slice(&(len / 0x1000).to_le_bytes());
            d[32..40].copy_from_slice(&0xfu64.to_le_bytes());
            bytes.extend_from_slice(&d);
        }
        write(m, map, &bytes);
        write_u64(m, key, 1);
        efi::SUCCESS
    }
}
