//! EFI_MP_SERVICES_PROTOCOL for the platform's one CPU (PI 1.9 vol. 2 §13.4), in the DXE
//! database: what an SMM CPU driver's entry point asks to learn how many processors there are
//! and what their APIC IDs are (edk2's PiSmmCpuDxeSmm calls GetNumberOfProcessors and
//! GetProcessorInfo before it relocates each CPU's SMBASE).

use super::{write, write_u64, Env, Flow, Frame, Served};
use crate::efi;
use machine::Machine;

/// The functions, in the protocol's order.
pub const FUNCTIONS: [&str; 7] = ["GetNumberOfProcessors", "GetProcessorInfo", "StartupAllAPs", "StartupThisAP", "SwitchBSP", "EnableDisableAP", "WhoAmI"];

/// ProcessorNumber's flag asking for EXTENDED_PROCESSOR_INFORMATION (CPU_V2_EXTENDED_TOPOLOGY).
const EXTENDED_TOPOLOGY: u64 = 1 << 24;
/// StatusFlag: PROCESSOR_AS_BSP_BIT | PROCESSOR_ENABLED_BIT | PROCESSOR_HEALTH_STATUS_BIT.
const BSP_ENABLED_HEALTHY: u32 = 0x7;
/// sizeof(EFI_PROCESSOR_INFORMATION): ProcessorId (8), StatusFlag (4), Location (3 x 4),
/// ExtendedInformation (Location2: 6 x 4).
const INFO_SIZE: usize = 48;

impl Env {
    /// Function `index` of the MP services: one processor, number 0, the BSP, APIC ID 0.
    pub fn mp(&mut self, m: &mut Machine, f: &Frame, index: u64) -> Served {
        let name = format!("MpServices->{}", FUNCTIONS.get(index as usize).unwrap_or(&"?"));
        let (nargs, st) = match index {
            0 => {
                let (total, enabled) = (f.arg(1), f.arg(2));
                if total == 0 || enabled == 0 {
                    (3, efi::INVALID_PARAMETER)
                } else {
                    write_u64(m, total, 1);
                    write_u64(m, enabled, 1);
                    (3, efi::SUCCESS)
                }
            }
            1 => {
                let (n, out) = (f.arg(1), f.arg(2));
                if out == 0 {
                    (3, efi::INVALID_PARAMETER)
                } else if n & !EXTENDED_TOPOLOGY != 0 {
                    (3, efi::NOT_FOUND)
                } else {
                    let mut info = [0u8; INFO_SIZE];
                    info[8..12].copy_from_slice(&BSP_ENABLED_HEALTHY.to_le_bytes());
                    // Without the flag the caller's buffer may end before ExtendedInformation.
                    let len = if n & EXTENDED_TOPOLOGY != 0 { INFO_SIZE } else { 24 };
                    write(m, out, &info[..len]);
                    (3, efi::SUCCESS)
                }
            }
            // No AP is enabled, so none can be started.
            2 => (7, efi::NOT_STARTED),
            // Processor 0 is the BSP; there is no other.
            3 => (7, if f.arg(2) == 0 { efi::INVALID_PARAMETER } else { efi::NOT_FOUND }),
            4 | 5 => (4, if f.arg(1) == 0 { efi::INVALID_PARAMETER } else { efi::NOT_FOUND }),
            _ => {
                let out = f.arg(1);
                write_u64(m, out, 0);
                (2, if out == 0 { efi::INVALID_PARAMETER } else { efi::SUCCESS })
            }
        };
        (name, nargs, None, Flow::Return(st))
    }
}
