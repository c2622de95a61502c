//! isa-debug-exit: a guest write of V ends the run with exit status V.

/// QEMU's isa-debug-exit device: remembers the value the guest wrote.
#[derive(Default)]
pub struct DebugExit {
    code: Option<u8>,
}

impl DebugExit {
    /// A guest write of `v`: the run ends with exit status `v & 0xFF`.
    pub fn write(&mut self, v: u32) {
        self.code = Some(v as u8);
    }
    /// The value written, once the guest has asked to exit.
    pub fn code(&self) -> Option<u8> {
        self.code
    }
}
