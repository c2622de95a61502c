//! isa-debug-exit: a guest write of V ends the run with exit status V.

#[derive(Default)]
pub struct DebugExit {
    code: Option<u8>,
}

impl DebugExit {
    pub fn write(&mut self, v: u32) {
        self.code = Some(v as u8);
    }
    /// The value written, once the guest has asked to exit.
    pub fn code(&self) -> Option<u8> {
        self.code
    }
}
