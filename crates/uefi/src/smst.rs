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
    /// A child dispatcher's Register(This, Function, RegisterContext*, Handle*).
    DispatchRegister,
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

/// The PI child dispatch protocols (PI 1.9 vol. 4 ch. 7), whose `Register(This, Function,
/// RegisterContext*, Handle*)` at offset 0 of the interface registers a handler for a hardware
/// SMI source.
pub const DISPATCH_PROTOCOLS: &[(&str, Dispatch)] = &[
    ("18a3c6dc-5eea-48c8-a1c1-b53389f98999", Dispatch::Sw),
    ("456d2859-a84b-4e47-a2ee-3276d886997d", Dispatch::Sx),
    ("4cec368e-8e8e-4d71-8be1-958c45fc8a53", Dispatch::Periodic),
    ("ee9b8d90-c5a6-40a2-bde2-52558d33cca1", Dispatch::Usb),
    ("25566b03-b577-4cbf-958c-ed663ea24380", Dispatch::Gpi),
    ("7300c4a1-43f2-4017-a51b-c81a7f40585b", Dispatch::StandbyButton),
    ("1b1183fa-1823-46a7-8872-9c578755409d", Dispatch::PowerButton),
    ("58dc368d-7bfa-4e77-abbc-0e29418df930", Dispatch::IoTrap),
];

/// A child dispatcher's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dispatch {
    /// Software SMI (APM_CNT value).
    Sw,
    /// Sleep state entry or exit.
    Sx,
    /// Periodic timer.
    Periodic,
    /// USB legacy or wake.
    Usb,
    /// General-purpose input.
    Gpi,
    /// Standby button.
    StandbyButton,
    /// Power button.
    PowerButton,
    /// I/O trap.
    IoTrap,
}

impl Dispatch {
    /// The dispatcher of protocol `guid`, if it is one.
    pub fn of(guid: &str) -> Option<Dispatch> {
        DISPATCH_PROTOCOLS.iter().find(|(g, _)| *g == guid).map(|(_, d)| *d)
    }

    /// Its RegisterContext at `ctx`, in words (PI vol. 4 ch. 7 layouts).
    pub fn context(self, mem: &(impl Memory + ?Sized), ctx: u64) -> String {
        let q = |o: u64| mem.u64(ctx.wrapping_add(o));
        let phase = |v: u64| if v & 0xffff_ffff == 0 { "entry" } else { "exit" };
        match self {
            Dispatch::Sw => q(0).map_or("?".into(), |v| format!("SW SMI {v:#x}")),
            Dispatch::Sx => q(0).map_or("?".into(), |v| format!("S{} {}", v & 0xffff_ffff, phase(v >> 32))),
            Dispatch::Periodic => match (q(0), q(8)) {
                (Some(p), Some(t)) => format!("period {} us, tick {} us", p / 10, t / 10),
                _ => "?".into(),
            },
            Dispatch::Usb => q(0).map_or("?".into(), |v| if v & 0xffff_ffff == 0 { "USB legacy".into() } else { "USB wake".into() }),
            Dispatch::Gpi => q(0).map_or("?".into(), |v| format!("GPI {v}")),
            Dispatch::StandbyButton | Dispatch::PowerButton => q(0).map_or("?".into(), |v| phase(v).to_string()),
            Dispatch::IoTrap => q(0).map_or("?".into(), |v| {
                let kind = match (v >> 32) & 0xffff_ffff {
                    0 => "write",
                    1 => "read",
                    _ => "read/write",
                };
                format!("I/O trap {:#x}+{} {kind}", v & 0xffff, (v >> 16) & 0xffff)
            }),
        }
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
    /// For a child dispatcher's Register: which dispatcher and its RegisterContext, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<(Dispatch, String)>,
    /// The image the caller ran in, as it was at the call (its base and bytes): an image whose
    /// entry point fails is unloaded and its memory reused, so the images resident at the end
    /// may not be the caller's ([`crate::images::enclosing`]).
    #[serde(skip)]
    pub image: Option<(u64, Vec<u8>)>,
}

/// A child dispatcher's Register call, stopped at its entry with `regs`: the handler (RDX)
/// and the RegisterContext (R8) read as `kind` lays it out.
pub fn dispatch_call(mem: &(impl Memory + ?Sized), kind: Dispatch, regs: &[u64; 16], smi: u64) -> Call {
    const RDX: usize = 2;
    const RSP: usize = 4;
    const R8: usize = 8;
    Call {
        service: Service::DispatchRegister,
        guid: None,
        caller: mem.u64(regs[RSP]).unwrap_or(0),
        smi,
        dispatch: Some((kind, format!("{} -> handler {:#x}", kind.context(mem, regs[R8]), regs[RDX]))),
        image: None,
    }
}

/// The call the CPU is about to make, stopped at `service`'s entry with `regs` (RAX..R15).
pub fn call(mem: &(impl Memory + ?Sized), service: Service, regs: &[u64; 16], smi: u64) -> Call {
    const RCX: usize = 1;
    const RDX: usize = 2;
    const RSP: usize = 4;
    let guid_arg = match service {
        Service::InstallProtocol | Service::HandlerRegister => regs[RDX],
        Service::RegisterNotify | Service::LocateProtocol => regs[RCX],
        Service::DispatchRegister => 0,
    };
    let guid: Option<Guid> = if guid_arg == 0 { None } else { mem.guid(guid_arg) };
    Call { service, guid: guid.map(|g| g.to_string()), caller: mem.u64(regs[RSP]).unwrap_or(0), smi, dispatch: None, image: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_lists::tests::Ram;

    #[test]
    fn dispatch_contexts_read_as_pi_lays_them_out() {
        let mut r = Ram::new(0x7f0_0000, 0x100);
        let b = r.base;
        r.put(b, 0xb2);
        assert_eq!(Dispatch::of("18a3c6dc-5eea-48c8-a1c1-b53389f98999"), Some(Dispatch::Sw));
        assert_eq!(Dispatch::Sw.context(&r.smram(), b), "SW SMI 0xb2");
        r.put(b, 1 << 32 | 3); // S3, exit
        assert_eq!(Dispatch::Sx.context(&r.smram(), b), "S3 exit");
        r.put(b, 160_000);
        r.put(b + 8, 10_000);
        assert_eq!(Dispatch::Periodic.context(&r.smram(), b), "period 16000 us, tick 1000 us");
        r.put(b, 2 << 32 | 4 << 16 | 0xb2);
        assert_eq!(Dispatch::IoTrap.context(&r.smram(), b), "I/O trap 0xb2+4 read/write");
        assert_eq!(Dispatch::of("ed32d533-99e6-4209-9cc0-2d72cdd998a7"), None);
    }

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
