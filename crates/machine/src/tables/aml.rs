//! A small ACPI Machine Language encoder (ACPI 6.4 §20.2 "AML Grammar Definition"): package
//! lengths, name segments, Scope/Device/Name objects, integers, EISA IDs, buffers and the
//! small resource descriptors of §6.4.2 that a DSDT needs for legacy devices.

/// ScopeOp, DeviceOp (ExtOpPrefix 0x5B 0x82), NameOp, BufferOp, PackageOp (§20.2.5).
pub const SCOPE_OP: u8 = 0x10;
/// ExtOpPrefix.
pub const EXT_OP_PREFIX: u8 = 0x5b;
/// DeviceOp (after ExtOpPrefix).
pub const DEVICE_OP: u8 = 0x82;
/// NameOp.
pub const NAME_OP: u8 = 0x08;
/// BufferOp.
pub const BUFFER_OP: u8 = 0x11;
/// PackageOp.
pub const PACKAGE_OP: u8 = 0x12;
/// ZeroOp.
pub const ZERO_OP: u8 = 0x00;
/// OneOp.
pub const ONE_OP: u8 = 0x01;
/// BytePrefix.
pub const BYTE_PREFIX: u8 = 0x0a;
/// WordPrefix.
pub const WORD_PREFIX: u8 = 0x0b;
/// DWordPrefix.
pub const DWORD_PREFIX: u8 = 0x0c;
/// RootChar: a name path from the root.
pub const ROOT_CHAR: u8 = b'\\';

/// PkgLength (§20.2.4): the length counts its own encoding bytes; one byte holds up to 63,
/// otherwise bits 7:6 of the lead byte give the count of following bytes.
pub fn pkg_length(content: usize) -> Vec<u8> {
    for extra in 0..4usize {
        let total = content + 1 + extra;
        let fits = match extra {
            0 => total < 0x40,
            1 => total < 1 << 12,
            2 => total < 1 << 20,
            _ => total < 1 << 28,
        };
        if fits {
            if extra == 0 {
                return vec![total as u8];
            }
            let mut v = vec![((extra as u8) << 6) | (total & 0xf) as u8];
            for k in 0..extra {
                v.push((total >> (4 + 8 * k)) as u8);
            }
            return v;
        }
    }
    // Longer than AML can express: an empty package (never built by smmlab).
    vec![1]
}

/// A NameString: optional root prefix, then 4-character segments padded with '_'.
pub fn name_string(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let p = match path.strip_prefix('\\') {
        Some(rest) => {
            out.push(ROOT_CHAR);
            rest
        }
        None => path,
    };
    let segs: Vec<&str> = p.split('.').filter(|s| !s.is_empty()).collect();
    match segs.len() {
        0 => out.push(0), // NullName
        1 => {}
        2 => out.push(0x2e), // DualNamePrefix
        n => {
            out.push(0x2f); // MultiNamePrefix
            out.push(n as u8);
        }
    }
    for s in segs {
        let mut seg = [b'_'; 4];
        for (d, c) in seg.iter_mut().zip(s.bytes()) {
            *d = c;
        }
        out.extend_from_slice(&seg);
    }
    out
}

/// An integer as the shortest constant (§20.2.3 ComputationalData).
pub fn integer(v: u32) -> Vec<u8> {
    match v {
        0 => vec![ZERO_OP],
        1 => vec![ONE_OP],
        2..=0xff => vec![BYTE_PREFIX, v as u8],
        0x100..=0xffff => {
            let b = (v as u16).to_le_bytes();
            vec![WORD_PREFIX, b[0], b[1]]
        }
        _ => {
            let mut o = vec![DWORD_PREFIX];
            o.extend_from_slice(&v.to_le_bytes());
            o
        }
    }
}

/// An EISA ID such as "PNP0303" compressed to a DWordConst (§19.6.35 EISAID): three letters
/// of 5 bits (A = 1) and four hex digits, stored big-endian in the dword.
pub fn eisa_id(id: &str) -> Vec<u8> {
    let b = id.as_bytes();
    let letter = |c: u8| (c.wrapping_sub(b'@') & 0x1f) as u16;
    let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u16;
    let (l0, l1, l2) = (letter(b.first().copied().unwrap_or(b'@')), letter(b.get(1).copied().unwrap_or(b'@')), letter(b.get(2).copied().unwrap_or(b'@')));
    let vendor = (l0 << 10) | (l1 << 5) | l2;
    let product = b.get(3..7).map(|d| d.iter().fold(0u16, |a, &c| (a << 4) | hex(c))).unwrap_or(0);
    let [v0, v1] = vendor.to_be_bytes();
    let [p0, p1] = product.to_be_bytes();
    vec![DWORD_PREFIX, v0, v1, p0, p1]
}

/// Name(`name`, `value`).
pub fn name(name: &str, value: Vec<u8>) -> Vec<u8> {
    let mut o = vec![NAME_OP];
    o.extend(name_string(name));
    o.extend(value);
    o
}

fn package_op(prefix: &[u8], name: &str, body: &[Vec<u8>]) -> Vec<u8> {
    let mut content = name_string(name);
    for b in body {
        content.extend_from_slice(b);
    }
    let mut o = prefix.to_vec();
    o.extend(pkg_length(content.len()));
    o.extend(content);
    o
}

/// Scope(`name`) { `body` }.
pub fn scope(name: &str, body: &[Vec<u8>]) -> Vec<u8> {
    package_op(&[SCOPE_OP], name, body)
}

/// Device(`name`) { `body` }.
pub fn device(name: &str, body: &[Vec<u8>]) -> Vec<u8> {
    package_op(&[EXT_OP_PREFIX, DEVICE_OP], name, body)
}

/// Package() { integers } (§20.2.5.4 DefPackage).
pub fn package(items: &[u32]) -> Vec<u8> {
    let mut content = vec![items.len() as u8];
    for &i in items {
        content.extend(integer(i));
    }
    let mut o = vec![PACKAGE_OP];
    o.extend(pkg_length(content.len()));
    o.extend(content);
    o
}

/// Buffer() holding `data` (§20.2.5.4 DefBuffer).
pub fn buffer(data: &[u8]) -> Vec<u8> {
    let mut content = integer(data.len() as u32);
    content.extend_from_slice(data);
    let mut o = vec![BUFFER_OP];
    o.extend(pkg_length(content.len()));
    o.extend(content);
    o
}

/// A ResourceTemplate of small descriptors, closed by the End Tag (§6.4.2.9) with a zero
/// checksum (meaning "treat as valid").
pub fn resource_template(items: &[Vec<u8>]) -> Vec<u8> {
    let mut data: Vec<u8> = items.concat();
    data.extend_from_slice(&[0x79, 0x00]);
    buffer(&data)
}

/// IO(Decode16, port, port, 1, len) (§6.4.2.5 I/O Port Descriptor).
pub fn io_port(port: u16, len: u8) -> Vec<u8> {
    let p = port.to_le_bytes();
    vec![0x47, 0x01, p[0], p[1], p[0], p[1], 0x01, len]
}

/// IRQNoFlags() { irq } (§6.4.2.1 IRQ Descriptor, 2-byte form: edge, active high).
pub fn irq(irq: u8) -> Vec<u8> {
    let m = (1u16 << (irq & 15)).to_le_bytes();
    vec![0x22, m[0], m[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(pkg_length(10), vec![11]);
        assert_eq!(pkg_length(62), vec![63], "63 still fits one byte");
        assert_eq!(pkg_length(63), vec![0x41, 0x04], "65 = 0x41: two bytes");
        assert_eq!(pkg_length(0x1000), vec![0x83, 0x00, 0x01], "0x1003 needs three bytes");
        assert_eq!(name_string("\\_SB"), b"\\_SB_");
        assert_eq!(name_string("KBD"), b"KBD_");
        assert_eq!(name_string("\\_SB.PCI0"), b"\\\x2e_SB_PCI0");
        assert_eq!(eisa_id("PNP0303"), vec![0x0c, 0x41, 0xd0, 0x03, 0x03]);
        assert_eq!(eisa_id("PNP0A03"), vec![0x0c, 0x41, 0xd0, 0x0a, 0x03]);
        assert_eq!(integer(0x1f0000), vec![0x0c, 0, 0, 0x1f, 0]);
        assert_eq!(integer(9), vec![0x0a, 9]);
        let d = device("KBD", &[name("_HID", eisa_id("PNP0303"))]);
        assert_eq!(&d[..2], &[0x5b, 0x82]);
        assert_eq!(d[2] as usize, d.len() - 2, "PkgLength covers itself and the rest");
        assert_eq!(io_port(0x60, 1), vec![0x47, 1, 0x60, 0, 0x60, 0, 1, 1]);
        assert_eq!(irq(12), vec![0x22, 0x00, 0x10]);
    }
}
