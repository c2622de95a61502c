//! The PI child dispatch protocols (PI 1.9 vol. 4 ch. 7): SW, Sx, periodic timer, USB, GPI,
//! standby and power button, I/O trap. Register(This, Function, RegisterContext*, Handle*)
//! records the handler and a copy of its context (the SW dispatcher picks a free value for
//! (UINTN)-1 and refuses one in use, as edk2's PCH dispatchers do); UnRegister(This, Handle)
//! drops it. `smmlab module call --sw N` then raises SW SMI N and calls the handler.

use super::{write_u64, Env, Flow, Frame, Served};
use crate::efi;
use machine::Machine;
use serde::Serialize;
use uefi_smm::smst::{dispatch_call, Dispatch};

/// The largest SW SMI value (MaximumSwiValue).
pub const MAX_SWI: u64 = 0xff;

/// One registration with a child dispatcher.
#[derive(Clone, Debug, Serialize)]
pub struct DispatchRegistration {
    /// Which dispatcher.
    pub kind: Dispatch,
    /// The handler.
    pub handler: u64,
    /// The DispatchHandle returned.
    pub handle: u64,
    /// A copy of the RegisterContext, in SMRAM (what the handler's Context points at).
    pub context: u64,
    /// The context's first word (the SW SMI value for SW).
    pub value: u64,
    /// The context as text.
    pub describe: String,
    /// The return address of the registering call.
    pub caller: u64,
}

/// The RegisterContext's size for `kind`.
fn context_size(kind: Dispatch) -> u64 {
    match kind {
        Dispatch::Periodic | Dispatch::Usb => 16,
        _ => 8,
    }
}

impl Env {
    pub(super) fn dispatcher(&mut self, m: &mut Machine, f: &Frame, kind: Dispatch, op: u8) -> Served {
        let label = format!("{kind:?}Dispatch2");
        match op {
            0 => {
                let (func, ctx, out) = (f.arg(1), f.arg(2), f.arg(3));
                if func == 0 || ctx == 0 || out == 0 {
                    return (format!("{label}->Register"), 4, None, Flow::Return(efi::INVALID_PARAMETER));
                }
                let caller = f.caller();
                let size = context_size(kind);
                let mut bytes = m.read_phys(ctx, size as usize, true);
                let mut value = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
                if kind == Dispatch::Sw {
                    let used: Vec<u64> = self.dispatch.iter().filter(|d| d.kind == Dispatch::Sw).map(|d| d.value).collect();
                    if value == u64::MAX {
                        match (1..MAX_SWI).find(|v| !used.contains(v)) {
                            Some(v) => {
                                value = v;
                                write_u64(m, ctx, v);
                                bytes[..8].copy_from_slice(&v.to_le_bytes());
                            }
                            None => return (format!("{label}->Register"), 4, None, Flow::Return(efi::OUT_OF_RESOURCES)),
                        }
                    } else if value > MAX_SWI || used.contains(&value) {
                        return (format!("{label}->Register"), 4, None, Flow::Return(efi::INVALID_PARAMETER));
                    }
                }
                let copy = self.smram.pool(size).expect("room for a context");
                super::write(m, copy, &bytes);
                let handle = self.smram.pool(0x20).expect("room for a handle");
                write_u64(m, out, handle);
                let regs = m.registers().0;
                let call = {
                    let mem = super::LiveMemory::new(m);
                    dispatch_call(&mem, kind, &regs, self.smis)
                };
                // The context alone: the handler is named apart.
        let describe = call.dispatch.as_ref().map(|d| d.1.split(" -> handler").next().unwrap_or_default().to_string()).unwrap_or_default();
                self.calls.push(call);
                self.dispatch.push(DispatchRegistration { kind, handler: func, handle, context: copy, value, describe, caller });
                (format!("{label}->Register"), 4, None, Flow::Return(efi::SUCCESS))
            }
            1 => {
                let h = f.arg(1);
                let before = self.dispatch.len();
                self.dispatch.retain(|d| d.handle != h);
                (format!("{label}->UnRegister"), 2, None, Flow::Return(if self.dispatch.len() < before { efi::SUCCESS } else { efi::INVALID_PARAMETER }))
            }
            _ => {
                // Periodic: GetNextShorterInterval(This, SmiTickInterval**): the list is empty.
                write_u64(m, f.arg(1), 0);
                (format!("{label}->GetNextShorterInterval"), 2, None, Flow::Return(efi::SUCCESS))
            }
        }
    }

    /// The SW registration for `value`.
    pub fn sw_registration(&self, value: u8) -> Option<&DispatchRegistration> {
        self.dispatch.iter().find(|d| d.kind == Dispatch::Sw && d.value == value as u64)
    }
}
