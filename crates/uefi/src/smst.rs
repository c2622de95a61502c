//! The SMM system table (EFI_SMM_SYSTEM_TABLE2, signature `SMST`) and the calls drivers make
//! through it. The table is a static of the SMM core (`gSmmCoreSmst`); from it come the
//! addresses of the services worth watching, at offsets of PI 1.9 vol. 4 ch. 3 as laid out on
//! x64 (the project's UEFI SMM reference, §1): SmmInstallProtocolInterface 0xA8,
//! SmmRegisterProtocolNotify 0xC0, SmmLocateProtocol 0xD0, SmiHandlerRegister 0xE0. A caller
//! stopped at a service's first instruction (the MS x64 ABI: RCX, RDX, R8, R9; the return
//! address at [RSP]) tells which protocol it produces, awaits or consumes.

use crate::smram::{Memory, Smram};
use fwimage::Guid;
use serde::Serialize;

/// `SIGNATURE_32('S','M','S','T')` in the UINT64 header signature.
const SMST: u64 = 0x5453_4d53;

/// A service of the SMST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// SmmInstallProtocolInterface(Handle*, Protocol*, InterfaceType, Interface).
    InstallProtocol,
    /// SmmRegisterProtocolNotify(Protocol*, Function, Registration*).
    RegisterNotify,
    /// SmmLocateProtocol(Protocol*, Registration, Interface**).
    LocateProtocol,
    /// SmiHandlerRegister(Handler, HandlerType*, DispatchHandle*).
    HandlerRegister,
}

/// Where the SMST and its watched services are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Services {
    /// The table.
    pub smst: u64,
    /// Each service's entry point.
    pub entries: [(Service, u64); 4],
}

impl Services {
    /// Finds the SMST in `smram`: the signature, a PI 1.x revision, the 24-byte header
    /// PiSmmCore sets, and the four services inside SMRAM.
    pub fn find(smram: &Smram) -> Option<Services> {
        for (base, data) in smram.ranges() {
            for (i, chunk) in data.chunks_exact(8).enumerate() {
                if u64::from_le_bytes(chunk.try_into().expect("8 bytes")) != SMST {
                    continue;
                }
                let at = base + 8 * i as u64;
                let Some(rev) = smram.u64(at + 8) else { continue };
                if rev >> 48 != 0 || (rev >> 16) & 0xffff != 1 || rev >> 32 != 24 {
                    continue;
                }
                let entry = |off: u64| smram.u64(at + off).filter(|&a| smram.contains(a));
                if let (Some(a), Some(b), Some(c), Some(d)) = (entry(0xa8), entry(0xc0), entry(0xd0), entry(0xe0)) {
                    return Some(Services {
                        smst: at,
                        entries: [(Service::InstallProtocol, a), (Service::RegisterNotify, b), (Service::LocateProtocol, c), (Service::HandlerRegister, d)],
                    });
                }
            }
        }
        None
    }

    /// The service whose entry is `rip`.
    pub fn at(&self, rip: u64) -> Option<Service> {
        self.entries.iter().find(|e| e.1 == rip).map(|e| e.0)
    }
}

/// One call of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Call {
    /// Which service.
    pub service: Service,
    /// The protocol or handler-type GUID it was called with (None: NULL, a root handler).
    pub guid: Option<String>,
    /// The return address: inside the calling module.
    pub caller: u64,
    /// SMM entries so far.
    pub smi: u64,
}

/// The call the CPU is about to make, stopped at `service`'s entry with `regs` (RAX..R15).
pub fn call(mem: &(impl Memory + ?Sized), service: Service, regs: &[u64; 16], smi: u64) -> Call {
    const RCX: usize = 1;
    const RDX: usize = 2;
    const RSP: usize = 4;
    let guid_arg = match service {
        Service::InstallProtocol | Service::HandlerRegister => regs[RDX],
        Service::RegisterNotify | Service::LocateProtocol => regs[RCX],
    };
    let guid: Option<Guid> = if guid_arg == 0 { None } else { mem.guid(guid_arg) };
    Call { service, guid: guid.map(|g| g.to_string()), caller: mem.u64(regs[RSP]).unwrap_or(0), smi }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_lists::tests::Ram;

    #[test]
    fn the_table_is_found_and_calls_read_from_the_registers() {
        let mut r = Ram::new(0x7f0_0000, 0x2000);
        let t = r.base + 0x400;
        r.put(t, SMST);
        r.put(t + 8, 24 << 32 | 1 << 16 | 60);
        for (off, f) in [(0xa8, 0x1000), (0xc0, 0x1100), (0xd0, 0x1200), (0xe0, 0x1300)] {
            r.put(t + off, r.base + f);
        }
        let g: Guid = "3242a9d8-ce70-4aa0-955d-5e7b140de4d2".parse().unwrap();
        r.guid(r.base + 0x800, g);
        r.put(r.base + 0x900, 0x7f0_1abc); // the return address on the stack
        let s = r.smram();
        let svc = Services::find(&s).unwrap();
        assert_eq!(svc.smst, t);
        assert_eq!(svc.at(r.base + 0x1200), Some(Service::LocateProtocol));
        let mut regs = [0u64; 16];
        regs[1] = r.base + 0x800;
        regs[4] = r.base + 0x900;
        let c = call(&s, Service::LocateProtocol, &regs, 2);
        assert_eq!((c.guid.as_deref(), c.caller), (Some("3242a9d8-ce70-4aa0-955d-5e7b140de4d2"), 0x7f0_1abc));
        // A wrong revision is not the table.
        r.put(t + 8, 2 << 16);
        assert_eq!(Services::find(&r.smram()), None);
    }
}
