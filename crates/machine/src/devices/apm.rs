//! Advanced Power Management control ports: APM_CNT (0xB2) and APM_STS (0xB3) (ICH9
//! datasheet doc. 316972 §13.7.1 "APM I/O Decode Register Details"; PIIX4 datasheet doc.
//! 290562 §4.1 "APMC/APMS"). Both are byte registers the firmware reads and writes; a write to
//! APM_CNT is handed to the southbridge, which decides whether it raises an SMI.

/// APM_CNT offset (port 0xB2 on a PC).
pub const APM_CNT: u16 = 0;
/// APM_STS offset (port 0xB3), a scratch byte used as the SMI data port.
pub const APM_STS: u16 = 1;

/// The two APM registers.
#[derive(Clone, Debug, Default)]
pub struct Apm {
    cnt: u8,
    sts: u8,
}

impl Apm {
    /// Reads `size` bytes from `offset` (0 or 1); bytes past APM_STS read as all ones.
    pub fn read(&self, offset: u16, size: u8) -> u32 {
        let mut v = 0u32;
        for k in 0..size.min(4) as u16 {
            let b = match offset + k {
                APM_CNT => self.cnt,
                APM_STS => self.sts,
                _ => 0xff,
            };
            v |= (b as u32) << (8 * k);
        }
        v
    }

    /// Writes the low `size` bytes of `value` from `offset`. Returns the command byte when
    /// APM_CNT was written (the southbridge's hook runs after APM_STS of the same access).
    pub fn write(&mut self, offset: u16, size: u8, value: u32) -> Option<u8> {
        let mut cmd = None;
        for k in 0..size.min(4) as u16 {
            let b = (value >> (8 * k)) as u8;
            match offset + k {
                APM_CNT => {
                    self.cnt = b;
                    cmd = Some(b);
                }
                APM_STS => self.sts = b,
                _ => {}
            }
        }
        cmd
    }

    /// APM_STS, the data byte that accompanies a command.
    pub fn data(&self) -> u8 {
        self.sts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apm_cnt_write_reports_the_command_and_reads_back() {
        let mut a = Apm::default();
        assert_eq!(a.write(APM_CNT, 1, 0x42), Some(0x42));
        assert_eq!(a.read(APM_CNT, 1), 0x42);
    }

    #[test]
    fn apm_sts_is_scratch_and_raises_nothing() {
        let mut a = Apm::default();
        assert_eq!(a.write(APM_STS, 1, 0x99), None);
        assert_eq!(a.data(), 0x99);
    }

    #[test]
    fn a_word_write_sets_data_and_command() {
        let mut a = Apm::default();
        assert_eq!(a.write(APM_CNT, 2, 0x0155), Some(0x55));
        assert_eq!(a.data(), 1);
        assert_eq!(a.read(APM_CNT, 4), 0xffff_0155);
    }
}
