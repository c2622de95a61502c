//! The SMST's services (PI 1.9 vol. 4 §3.2, EFI_MM_SYSTEM_TABLE; offsets in the project's UEFI
//! SMM reference §1), with the checks edk2-stable202211's PiSmmCore makes: the allocators take
//! only EfiRuntimeServicesCode/Data, SmmStartupThisAp refuses the current CPU and CPUs that do
//! not exist, SmiHandlerRegister wants a handler and a DispatchHandle.

use super::{read_guid, read_u64, write, write_u64, Env, Flow, Frame, HandlerRegistration, Served};
use crate::efi;
use crate::layout;
use fwimage::Guid;
use machine::Machine;
use uefi_smm::smst::{Call, Service as Watched};

/// The SMST's function members: (offset, name).
pub const FUNCTIONS: &[(u64, &str)] = &[
    (0x28, "SmmInstallConfigurationTable"),
    (0x30, "SmmIo.Mem.Read"),
    (0x38, "SmmIo.Mem.Write"),
    (0x40, "SmmIo.Io.Read"),
    (0x48, "SmmIo.Io.Write"),
    (0x50, "SmmAllocatePool"),
    (0x58, "SmmFreePool"),
    (0x60, "SmmAllocatePages"),
    (0x68, "SmmFreePages"),
    (0x70, "SmmStartupThisAp"),
    (0xa8, "SmmInstallProtocolInterface"),
    (0xb0, "SmmUninstallProtocolInterface"),
    (0xb8, "SmmHandleProtocol"),
    (0xc0, "SmmRegisterProtocolNotify"),
    (0xc8, "SmmLocateHandle"),
    (0xd0, "SmmLocateProtocol"),
    (0xd8, "SmiManage"),
    (0xe0, "SmiHandlerRegister"),
    (0xe8, "SmiHandlerUnRegister"),
];

fn name(off: u64) -> String {
    let n = FUNCTIONS.iter().find(|f| f.0 == off).map_or("?", |f| f.1);
    format!("SMST->{n}")
}

impl Env {
    pub(super) fn smst(&mut self, m: &mut Machine, f: &Frame, off: u64) -> Served {
        let mut guid: Option<Guid> = None;
        let (nargs, flow) = match off {
            0x28 => {
                guid = read_guid(m, f.arg(1));
                let table = f.arg(2);
                let st = match guid {
                    None => efi::INVALID_PARAMETER,
                    Some(g) => {
                        self.smst_config.retain(|e| e.0 != g);
                        if table != 0 {
                            self.smst_config.push((g, table));
                        }
                        self.write_smst_config(m);
                        efi::SUCCESS
                    }
                };
                (4, Flow::Return(st))
            }
            0x30..=0x48 => return self.cpu_io(m, f, off - 0x30),
            0x50 => {
                let (ty, size, out) = (f.arg(0), f.arg(1), f.arg(2));
                let st = if ty != efi::RUNTIME_SERVICES_CODE && ty != efi::RUNTIME_SERVICES_DATA || out == 0 {
                    efi::INVALID_PARAMETER
                } else {
                    match self.smram.pool(size) {
                        Some(p) => {
                            write_u64(m, out, p);
                            efi::SUCCESS
                        }
                        None => efi::OUT_OF_RESOURCES,
                    }
                };
                (3, Flow::Return(st))
            }
            0x58 => {
                let p = f.arg(0);
                (1, Flow::Return(if self.smram.free(p) { efi::SUCCESS } else { efi::INVALID_PARAMETER }))
            }
            0x60 => {
                let (kind, ty, pages, out) = (f.arg(0), f.arg(1), f.arg(2), f.arg(3));
                let st = if ty != efi::RUNTIME_SERVICES_CODE && ty != efi::RUNTIME_SERVICES_DATA || out == 0 {
                    efi::INVALID_PARAMETER
                } else {
                    // AllocateAnyPages 0, AllocateMaxAddress 1 (the limit in *Memory), AllocateAddress 2.
                    let max = (kind == 1).then(|| read_u64(m, out));
                    match if kind == 2 { None } else { self.smram.pages(pages, 0x1000, max) } {
                        Some(p) => {
                            write_u64(m, out, p);
                            efi::SUCCESS
                        }
                        None if kind == 2 => efi::NOT_FOUND,
                        None => efi::OUT_OF_RESOURCES,
                    }
                };
                (4, Flow::Return(st))
            }
            0x68 => {
                let p = f.arg(0);
                (2, Flow::Return(if self.smram.free(p) { efi::SUCCESS } else { efi::NOT_FOUND }))
            }
            // One CPU, which is the one running: there is no AP to start (PiSmmCpuDxeSmm's
            // SmmStartupThisAp refuses the current CPU and indexes past NumberOfCpus).
            0x70 => (3, Flow::Return(efi::INVALID_PARAMETER)),
            0xa8 => {
                guid = read_guid(m, f.arg(1));
                let (hp, ty, iface) = (f.arg(0), f.arg(2), f.arg(3));
                let caller = f.caller();
                let flow = match guid {
                    Some(g) if ty == 0 => {
                        self.calls.push(Call { service: Watched::InstallProtocol, guid: Some(g.to_string()), caller, smi: self.smis, dispatch: None, image: None });
                        match self.install(m, true, hp, g, iface, caller) {
                            Ok((_, calls)) => Flow::Call { status: efi::SUCCESS, calls },
                            Err(st) => Flow::Return(st),
                        }
                    }
                    _ => Flow::Return(efi::INVALID_PARAMETER),
                };
                (4, flow)
            }
            0xb0 => {
                guid = read_guid(m, f.arg(1));
                let (h, iface) = (f.arg(0), f.arg(2));
                let before = self.smm_db.installed.len();
                self.smm_db.installed.retain(|i| !(i.handle == h && Some(i.guid) == guid && i.interface == iface));
                (3, Flow::Return(if self.smm_db.installed.len() < before { efi::SUCCESS } else { efi::NOT_FOUND }))
            }
            0xb8 => {
                let (g, st) = self.handle_protocol(m, f, true);
                guid = g;
                (3, Flow::Return(st))
            }
            0xc0 => {
                let (g, st) = self.register_notify(m, f);
                guid = g;
                (3, Flow::Return(st))
            }
            0xc8 => {
                let (g, st) = self.locate_handle(m, f, true);
                guid = g;
                (5, Flow::Return(st))
            }
            0xd0 => {
                let (g, st) = self.locate_protocol(m, f, true);
                guid = g;
                (3, Flow::Return(st))
            }
            // The runner is the core: a driver managing handlers itself finds none.
            0xd8 => {
                guid = read_guid(m, f.arg(0));
                (4, Flow::Return(efi::NOT_FOUND))
            }
            0xe0 => {
                let (handler, type_ptr, out) = (f.arg(0), f.arg(1), f.arg(2));
                guid = read_guid(m, type_ptr);
                let caller = f.caller();
                let st = if handler == 0 || out == 0 {
                    efi::INVALID_PARAMETER
                } else {
                    // The DispatchHandle is the handler's record, as edk2's SMI_HANDLER is.
                    let handle = self.smram.pool(0x40).expect("room for a handler record");
                    write_u64(m, out, handle);
                    self.handlers.push(HandlerRegistration { handler, guid, handle, caller });
                    self.calls.push(Call { service: Watched::HandlerRegister, guid: guid.map(|g| g.to_string()), caller, smi: self.smis, dispatch: None, image: None });
                    efi::SUCCESS
                };
                (3, Flow::Return(st))
            }
            0xe8 => {
                let h = f.arg(0);
                let before = self.handlers.len();
                self.handlers.retain(|r| r.handle != h);
                (1, Flow::Return(if self.handlers.len() < before { efi::SUCCESS } else { efi::INVALID_PARAMETER }))
            }
            _ => (4, Flow::Return(efi::UNSUPPORTED)),
        };
        (name(off), nargs, guid, flow)
    }

    /// Writes the SMST's configuration table (NumberOfTableEntries, SmmConfigurationTable).
    pub fn write_smst_config(&mut self, m: &mut Machine) {
        let mut bytes = Vec::new();
        for (g, t) in self.smst_config.iter().take(layout::SMST_CONFIG_ENTRIES as usize) {
            bytes.extend_from_slice(&g.0);
            bytes.extend_from_slice(&t.to_le_bytes());
        }
        write(m, layout::SMST_CONFIG, &bytes);
        write_u64(m, layout::SMST + 0x98, self.smst_config.len().min(layout::SMST_CONFIG_ENTRIES as usize) as u64);
        write_u64(m, layout::SMST + 0xa0, layout::SMST_CONFIG);
    }
}
