//! The Bochs/QEMU debug console: bytes written to its port are the firmware's log; a read
//! returns 0xE9 so firmware can detect it.

use std::io::Write;

/// Collects what the guest writes, and copies it to an optional sink as it arrives.
#[derive(Default)]
pub struct Debugcon {
    /// Every byte written so far.
    pub output: Vec<u8>,
    /// Where the bytes are copied as they arrive (flushed at each newline), if anywhere.
    pub sink: Option<Box<dyn Write>>,
}

impl Debugcon {
    /// The value a read returns.
    pub const READBACK: u32 = 0xe9;

    /// A guest write of byte `b`.
    pub fn write(&mut self, b: u8) {
        self.output.push(b);
        if let Some(s) = self.sink.as_mut() {
            // A failing sink (closed pipe) must not stop the guest.
            let _ = s.write_all(&[b]);
            if b == b'\n' {
                let _ = s.flush();
            }
        }
    }

    /// Flushes the sink.
    pub fn flush(&mut self) {
        if let Some(s) = self.sink.as_mut() {
            let _ = s.flush();
        }
    }
}
