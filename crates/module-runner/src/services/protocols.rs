//! A protocol database (one for SMM, one for DXE): handles with their protocol interfaces, and
//! the notifications waiting for a protocol, as the UEFI spec's InstallProtocolInterface,
//! HandleProtocol, LocateHandle and LocateProtocol describe them (UEFI 2.10 §7.3) and PI's SMST
//! mirrors them (PI 1.9 vol. 4 §3.2). Also the two DXE protocols an SMM driver's libraries
//! look up at entry: EFI_SMM_BASE2 and EFI_SMM_ACCESS2.

use super::{Calls, read_guid, read_u64, write, write_u64, Env, Flow, Frame, Served};
use crate::efi;
use crate::layout;
use fwimage::Guid;
use machine::Machine;
use serde::Serialize;

/// One installed interface.
#[derive(Clone, Debug, Serialize)]
pub struct Installed {
    /// The handle.
    pub handle: u64,
    /// The protocol.
    pub guid: Guid,
    /// The interface pointer.
    pub interface: u64,
    /// Who installed it (the return address; 0 for the runner's own).
    pub caller: u64,
}

/// A protocol database.
#[derive(Clone, Debug, Default)]
pub struct Db {
    /// Installed interfaces, in order.
    pub installed: Vec<Installed>,
    /// Handles made so far.
    pub handles: Vec<u64>,
    /// Notifications: (protocol, function, registration, caller).
    pub notify: Vec<(Guid, u64, u64, u64)>,
}

impl Db {
    /// The first interface of `guid`.
    pub fn locate(&self, guid: &Guid) -> Option<u64> {
        self.installed.iter().find(|i| i.guid == *guid).map(|i| i.interface)
    }

    /// The interface of `guid` on `handle`.
    pub fn on_handle(&self, handle: u64, guid: &Guid) -> Option<u64> {
        self.installed.iter().find(|i| i.handle == handle && i.guid == *guid).map(|i| i.interface)
    }

    /// The handles carrying `guid` (every handle for None), in installation order.
    pub fn handles_with(&self, guid: Option<&Guid>) -> Vec<u64> {
        let mut v: Vec<u64> = Vec::new();
        for i in &self.installed {
            if guid.is_none_or(|g| *g == i.guid) && !v.contains(&i.handle) {
                v.push(i.handle);
            }
        }
        v
    }

    /// The notification functions waiting for `guid`.
    pub fn waiting(&self, guid: &Guid) -> Vec<u64> {
        self.notify.iter().filter(|n| n.0 == *guid).map(|n| n.1).collect()
    }
}

impl Env {
    /// A new handle of the SMM (`smm`) or DXE database: a small block in its heap, so it is
    /// a real address.
    pub fn new_handle(&mut self, smm: bool) -> u64 {
        let h = if smm { self.smram.pool(0x20) } else { self.dxe.pool(0x20) }.expect("room for a handle");
        if smm { &mut self.smm_db } else { &mut self.dxe_db }.handles.push(h);
        h
    }

    /// Installs `interface` for `guid` on `*handle_ptr` (a new handle when it holds NULL, which
    /// is written back), in the SMM or DXE database; the notifications waiting for it follow.
    pub fn install(&mut self, m: &mut Machine, smm: bool, handle_ptr: u64, guid: Guid, interface: u64, caller: u64) -> Result<(u64, Calls), u64> {
        if handle_ptr == 0 {
            return Err(efi::INVALID_PARAMETER);
        }
        let mut handle = read_u64(m, handle_ptr);
        let db = if smm { &self.smm_db } else { &self.dxe_db };
        if handle != 0 && !db.handles.contains(&handle) {
            return Err(efi::INVALID_PARAMETER);
        }
        if handle != 0 && db.on_handle(handle, &guid).is_some() {
            return Err(efi::INVALID_PARAMETER);
        }
        if handle == 0 {
            handle = self.new_handle(smm);
            write_u64(m, handle_ptr, handle);
        }
        let db = if smm { &mut self.smm_db } else { &mut self.dxe_db };
        db.installed.push(Installed { handle, guid, interface, caller });
        // SMM notifications are called as (Protocol*, Interface, Handle) (PI vol. 4,
        // EFI_MM_NOTIFY_FN); the GUID they get is a copy in SMRAM.
        let mut calls = Vec::new();
        if smm {
            let waiting = db.waiting(&guid);
            if !waiting.is_empty() {
                let g = self.smram.pool(16).expect("room for a GUID");
                write(m, g, &guid.0);
                calls = waiting.into_iter().map(|f| (f, [g, interface, handle, 0])).collect();
            }
        }
        Ok((handle, calls))
    }

    /// The runner's own installation of `guid` on a fresh handle.
    pub fn provide(&mut self, smm: bool, guid: Guid, interface: u64) -> u64 {
        let handle = self.new_handle(smm);
        if smm { &mut self.smm_db } else { &mut self.dxe_db }.installed.push(Installed { handle, guid, interface, caller: 0 });
        handle
    }

    /// LocateProtocol for `guid` in the SMM or DXE database; a protocol nobody installed is
    /// answered by a logged stub (recorded in [`Env::stubs`]).
    pub fn locate_or_stub(&mut self, m: &mut Machine, smm: bool, guid: Guid) -> u64 {
        let db = if smm { &self.smm_db } else { &self.dxe_db };
        if let Some(i) = db.locate(&guid) {
            return i;
        }
        let iface = self.stub_protocol(m, guid, smm);
        self.provide(smm, guid, iface);
        iface
    }

    /// LocateProtocol(Protocol*, Registration, Interface**) on either side.
    pub fn locate_protocol(&mut self, m: &mut Machine, f: &Frame, smm: bool) -> (Option<Guid>, u64) {
        let Some(guid) = read_guid(m, f.arg(0)) else { return (None, efi::INVALID_PARAMETER) };
        let out = f.arg(2);
        if out == 0 {
            return (Some(guid), efi::INVALID_PARAMETER);
        }
        if smm {
            let caller = f.caller();
            self.calls.push(uefi_smm::smst::Call { service: uefi_smm::smst::Service::LocateProtocol, guid: Some(guid.to_string()), caller, smi: self.smis, dispatch: None, image: None });
            if self.absent.contains(&guid) && self.smm_db.locate(&guid).is_none() {
                write_u64(m, out, 0);
                return (Some(guid), efi::NOT_FOUND);
            }
        }
        let iface = self.locate_or_stub(m, smm, guid);
        write_u64(m, out, iface);
        (Some(guid), efi::SUCCESS)
    }

    /// HandleProtocol(Handle, Protocol*, Interface**) on either side.
    pub fn handle_protocol(&mut self, m: &mut Machine, f: &Frame, smm: bool) -> (Option<Guid>, u64) {
        let handle = f.arg(0);
        let guid = read_guid(m, f.arg(1));
        let out = f.arg(2);
        let db = if smm { &self.smm_db } else { &self.dxe_db };
        let found = guid.and_then(|g| db.on_handle(handle, &g));
        match (found, out) {
            (_, 0) => (guid, efi::INVALID_PARAMETER),
            (Some(i), _) => {
                write_u64(m, out, i);
                (guid, efi::SUCCESS)
            }
            (None, _) => {
                write_u64(m, out, 0);
                (guid, efi::UNSUPPORTED)
            }
        }
    }

    /// LocateHandle(SearchType, Protocol*, SearchKey, BufferSize*, Buffer) on either side:
    /// AllHandles (0) and ByProtocol (2).
    pub fn locate_handle(&mut self, m: &mut Machine, f: &Frame, smm: bool) -> (Option<Guid>, u64) {
        let search = f.arg(0);
        let guid = read_guid(m, f.arg(1));
        let (size_ptr, buf) = (f.arg(3), f.arg(4));
        let db = if smm { &self.smm_db } else { &self.dxe_db };
        let handles = match search {
            0 => db.handles_with(None),
            2 if guid.is_some() => db.handles_with(guid.as_ref()),
            _ => return (guid, efi::INVALID_PARAMETER),
        };
        if handles.is_empty() {
            return (guid, efi::NOT_FOUND);
        }
        let need = 8 * handles.len() as u64;
        let have = read_u64(m, size_ptr);
        write_u64(m, size_ptr, need);
        if have < need {
            return (guid, efi::BUFFER_TOO_SMALL);
        }
        let bytes: Vec<u8> = handles.iter().flat_map(|h| h.to_le_bytes()).collect();
        write(m, buf, &bytes);
        (guid, efi::SUCCESS)
    }

    /// The RegisterProtocolNotify of the SMST: Function is called as each interface of the
    /// protocol is installed.
    pub fn register_notify(&mut self, m: &mut Machine, f: &Frame) -> (Option<Guid>, u64) {
        let guid = read_guid(m, f.arg(0));
        let (func, reg) = (f.arg(1), f.arg(2));
        let caller = f.caller();
        let Some(g) = guid else { return (None, efi::INVALID_PARAMETER) };
        if reg == 0 {
            return (guid, efi::INVALID_PARAMETER);
        }
        if func == 0 {
            // A NULL function removes the registration it names.
            let r = read_u64(m, reg);
            self.smm_db.notify.retain(|n| n.2 != r);
            return (guid, efi::SUCCESS);
        }
        let token = self.smram.pool(0x10).expect("room for a registration");
        write_u64(m, reg, token);
        self.smm_db.notify.push((g, func, token, caller));
        self.calls.push(uefi_smm::smst::Call { service: uefi_smm::smst::Service::RegisterNotify, guid: Some(g.to_string()), caller, smi: self.smis, dispatch: None, image: None });
        (guid, efi::SUCCESS)
    }

    /// EFI_SMM_ACCESS2_PROTOCOL: GetCapabilities reports the A/B segment and TSEG, closed and locked, as a
    /// platform's SmmAccess2Dxe does after EndOfDxe; Open, Close and Lock answer as a locked
    /// chipset does (Open fails, the rest succeed).
    pub fn access2(&mut self, m: &mut Machine, f: &Frame, off: u64) -> Served {
        match off {
            0x18 => {
                let (size_ptr, map) = (f.arg(1), f.arg(2));
                let need = 32 * layout::SMRAM_RANGES.len() as u64;
                let have = read_u64(m, size_ptr);
                write_u64(m, size_ptr, need);
                let st = if have < need {
                    efi::BUFFER_TOO_SMALL
                } else {
                    let mut d = Vec::new();
                    for r in layout::SMRAM_RANGES {
                        for v in [r.start, r.start, r.end - r.start, efi::SMRAM_CLOSED_LOCKED_CACHEABLE] {
                            d.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                    write(m, map, &d);
                    efi::SUCCESS
                };
                ("SmmAccess2->GetCapabilities".into(), 3, None, Flow::Return(st))
            }
            0x00 => ("SmmAccess2->Open".into(), 1, None, Flow::Return(efi::ACCESS_DENIED)),
            0x08 => ("SmmAccess2->Close".into(), 1, None, Flow::Return(efi::SUCCESS)),
            _ => ("SmmAccess2->Lock".into(), 1, None, Flow::Return(efi::SUCCESS)),
        }
    }
}
