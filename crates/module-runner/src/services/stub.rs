//! Logged stubs: a protocol nobody provides is answered by an interface of 64 function slots,
//! each of which records its call (which protocol, which function, the arguments) and returns
//! EFI_UNSUPPORTED, or the value recorded for it (`--answer GUID#N=VALUE`). The PCD protocols'
//! functions return values rather than statuses: PCD_PROTOCOL's come from the firmware image's
//! own PCD databases when it has them (`fwimage::pcd`), the others' return 0 unless answered. A module that would crash on efi_fuzz's EFI_NOT_FOUND runs on,
//! and the report says what it asked for.

use super::{Env, Flow, Frame, Served, Service};
use crate::efi;
use fwimage::Guid;
use machine::Machine;
use serde::Serialize;

/// Functions per stubbed interface.
pub const STUB_FUNCTIONS: usize = 64;

/// The PCD protocols, whose functions return values (DxePcdLib: PCD_PROTOCOL
/// 11B34006-D85B-4D0A-A290-D5A571310EF7, EFI_PCD_PROTOCOL 13A3F0F6-264A-3EF0-F2E0-DEC512342F34,
/// GET_PCD_INFO 5BE40F57-FA68-4610-BBBF-E9C5FCDAD365, EFI_GET_PCD_INFO FD0F4478-0EFD-461D-BA2D-E58C45FD5F5E).
const VALUE_PROTOCOLS: &[&str] = &["11b34006-d85b-4d0a-a290-d5a571310ef7", "13a3f0f6-264a-3ef0-f2e0-dec512342f34", "5be40f57-fa68-4610-bbbf-e9c5fcdad365", "fd0f4478-0efd-461d-ba2d-e58c45fd5f5e"];

/// A protocol answered by a stub.
#[derive(Clone, Debug, Serialize)]
pub struct StubbedProtocol {
    /// Its GUID.
    pub guid: Guid,
    /// Its edk2 name, when known.
    pub name: Option<&'static str>,
    /// SMM (SmmLocateProtocol) or DXE (gBS->LocateProtocol).
    pub smm: bool,
    /// The interface handed out.
    pub interface: u64,
    /// The calls made through it.
    pub calls: Vec<StubCall>,
}

/// One call of a stub function.
#[derive(Clone, Debug, Serialize)]
pub struct StubCall {
    /// The function's index in the interface (its offset / 8).
    pub index: usize,
    /// RCX, RDX, R8, R9.
    pub args: [u64; 4],
    /// The return address.
    pub caller: u64,
    /// What it returned.
    pub returned: u64,
}

impl Env {
    /// PCD_PROTOCOL function `i` (MdePkg `Protocol/Pcd.h` order: SetSku 0, Get8..Get64 1-4,
    /// GetPtr 5, GetBool 6, GetSize 7, the Ex forms 8-14, Set8..Set64 15-18, SetPtr 19,
    /// SetBool 20, ...) answered from the image's PCD databases: a Get returns what a Set
    /// stored or the token's default, a Set stores its value and returns EFI_SUCCESS; other
    /// functions, and every one without databases, return 0.
    fn pcd_call(&mut self, i: usize, args: [u64; 4]) -> u64 {
        let token = args[0];
        match i {
            1..=4 | 6 => self.pcd_set.get(&token).copied().or_else(|| match self.pcd.as_ref()?.value(token)? {
                fwimage::pcd::Value::Number { value, .. } => Some(value),
                fwimage::pcd::Value::Pointer => None,
            }),
            7 => match self.pcd.as_ref().and_then(|p| p.value(token)) {
                Some(fwimage::pcd::Value::Number { size, .. }) => Some(size as u64),
                _ => None,
            },
            15..=18 | 20 => {
                self.pcd_set.insert(token, args[1]);
                Some(efi::SUCCESS)
            }
            _ => None,
        }
        .unwrap_or(0)
    }

    /// A stub interface for `guid` on the SMM or DXE side.
    pub fn stub_protocol(&mut self, m: &mut Machine, guid: Guid, smm: bool) -> u64 {
        let index = self.stubs.len();
        let iface = if smm { self.smram.pool(8 * STUB_FUNCTIONS as u64) } else { self.dxe.pool(8 * STUB_FUNCTIONS as u64) }.expect("room for a stub");
        let mut table = Vec::with_capacity(8 * STUB_FUNCTIONS);
        for i in 0..STUB_FUNCTIONS {
            let s = self.slot(m, Service::Stub(index, i), smm);
            table.extend_from_slice(&s.to_le_bytes());
        }
        super::write(m, iface, &table);
        self.stubs.push(StubbedProtocol { guid, name: uefi_smm::guid_names::name(&guid), smm, interface: iface, calls: Vec::new() });
        m.set_breakpoints(&self.breakpoints());
        iface
    }

    pub(super) fn stub_call(&mut self, f: &Frame, p: usize, i: usize) -> Served {
        let args = [f.arg(0), f.arg(1), f.arg(2), f.arg(3)];
        let caller = f.caller();
        let guid = self.stubs[p].guid;
        let key = format!("{guid}#{i}");
        let returned = match self.answers.get(&key) {
            Some(v) => *v,
            None if guid.to_string() == VALUE_PROTOCOLS[0] => self.pcd_call(i, args),
            None if VALUE_PROTOCOLS.contains(&guid.to_string().as_str()) => 0,
            None => efi::UNSUPPORTED,
        };
        let s = &mut self.stubs[p];
        s.calls.push(StubCall { index: i, args, caller, returned });
        let label = s.name.map_or_else(|| guid.to_string(), str::to_string);
        (format!("stub {label}[{i}]"), 4, Some(guid), Flow::Return(returned))
    }
}
