//! The rule catalogue: one entry per check, with the chipsec module whose rule it follows.

/// A rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The ID, SMM001...
    pub id: &'static str,
    /// A short name (kebab-case).
    pub name: &'static str,
    /// What passes.
    pub description: &'static str,
    /// The chipsec module (or attack class) the rule follows.
    pub reference: &'static str,
}

/// Compatible SMRAM is locked (D_LCK set, D_OPEN clear).
pub const SMRAM_LOCK: &str = "SMM001";
/// SMRR is programmed and covers TSEG.
pub const SMRR: &str = "SMM002";
/// TSEG is enabled, locked and contains the SMRR range.
pub const TSEG_LOCK: &str = "SMM003";
/// SMI sources are enabled and locked (GBL_SMI_EN, SMI_LOCK).
pub const BIOS_SMI: &str = "SMM004";
/// BIOS writes are protected (BLE, SMM_BWP, BIOSWE clear).
pub const BIOS_WP: &str = "SMM005";
/// SMM_CODE_CHK is enabled and locked.
pub const CODE_CHK: &str = "SMM006";
/// AMD HWCR.SmmLock is set.
pub const AMD_SMM_LOCK: &str = "SMM007";
/// AMD SMM_MASK closes nothing outside SMM and covers TSEG.
pub const AMD_SMM_MASK: &str = "SMM008";
/// No SMM code fetch outside SMRAM (call-outs).
pub const CALLOUT: &str = "SMM101";
/// No SMRAM write through a pointer the caller passed.
pub const SMRAM_POINTER: &str = "SMM102";
/// No SMM write outside SMRAM that the caller did not pass.
pub const UNPASSED_WRITE: &str = "SMM103";
/// No double fetch of the caller's buffer in one SMI.
pub const DOUBLE_FETCH: &str = "SMM104";
/// A buffer that runs into SMRAM is rejected.
pub const COMM_OVERLAP: &str = "SMM105";
/// A hostile SW SMI does not crash the machine.
pub const HANDLER_FAULT: &str = "SMM106";

/// Every rule, in report order.
pub const RULES: &[Rule] = &[
    Rule { id: SMRAM_LOCK, name: "smram-lock", description: "Compatible SMRAM is locked: with G_SMRAME = 1, D_LCK = 1 and D_OPEN = 0", reference: "chipsec common.smm" },
    Rule { id: SMRR, name: "smrr", description: "SMRR is programmed (valid type, PHYSBASE and PHYSMASK nonzero, VALID) and covers TSEG", reference: "chipsec common.smrr" },
    Rule { id: TSEG_LOCK, name: "tseg-lock", description: "TSEG is enabled and its configuration (ESMRAMC, TSEGMB) is read-only after D_LCK, and it contains the SMRR range", reference: "chipsec common.smm_dma" },
    Rule { id: BIOS_SMI, name: "bios-smi", description: "SMI sources are enabled and locked: GBL_SMI_EN = 1 and SMI_LOCK = 1", reference: "chipsec common.bios_smi" },
    Rule { id: BIOS_WP, name: "bios-wp", description: "BIOS writes are protected: BLE = 1, BIOSWE = 0 and SMM_BWP = 1", reference: "chipsec common.bios_wp" },
    Rule { id: CODE_CHK, name: "smm-code-chk", description: "SMM_CODE_CHK_EN = 1 and LOCK = 1 in MSR_SMM_FEATURE_CONTROL (WARNING if not enabled)", reference: "chipsec common.smm_code_chk" },
    Rule { id: AMD_SMM_LOCK, name: "amd-smm-lock", description: "HWCR.SmmLock = 1", reference: "chipsec common.smm_lock" },
    Rule { id: AMD_SMM_MASK, name: "amd-smm-mask", description: "SMM_MASK: TClose = AClose = 0 outside SMM, and TValid = 1 over TSEG when the chipset has TSEG", reference: "chipsec common.smm_close, common.smm_addr" },
    Rule { id: CALLOUT, name: "smm-callout", description: "No code is fetched outside SMRAM while in SMM", reference: "SMM call-outs (ThinkPwn class)" },
    Rule { id: SMRAM_POINTER, name: "smm-unchecked-pointer", description: "No SMRAM write through an address taken from the caller's registers", reference: "chipsec tools.smm.smm_ptr; confused deputy" },
    Rule { id: UNPASSED_WRITE, name: "smm-unpassed-write", description: "No SMM write to memory outside SMRAM that the caller did not pass", reference: "chipsec tools.smm.smm_ptr (buffer diff)" },
    Rule { id: DOUBLE_FETCH, name: "smm-double-fetch", description: "No byte of the caller's buffer is fetched twice in one SMI (TOCTOU)", reference: "CommBuffer TOCTOU / double fetch" },
    Rule { id: COMM_OVERLAP, name: "smm-commbuf-overlap", description: "A buffer that runs into SMRAM is rejected, not accessed", reference: "low-SMRAM corruption; SmmIsBufferOutsideSmmValid" },
    Rule { id: HANDLER_FAULT, name: "smm-handler-fault", description: "A SW SMI with hostile register values does not crash the machine", reference: "chipsec tools.smm.smm_ptr (may hang)" },
];

/// The rule with `id`.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}
