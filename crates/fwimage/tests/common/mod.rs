//! Shared test helpers: the Debian OVMF images and a small image builder.
#![allow(dead_code)]

use std::path::Path;

pub const OVMF_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
pub const OVMF_PLAIN: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";

/// Reads an OVMF image; the `ovmf` Debian package provides them (scripts/test.sh installs it).
pub fn ovmf(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(path))
        .unwrap_or_else(|e| panic!("{path}: {e}; install the Debian `ovmf` package"))
}

pub const FFS2: [u8; 16] = [
    0x78, 0xe5, 0x8c, 0x8c, 0x3d, 0x8a, 0x1c, 0x4f, 0x99, 0x35, 0x89, 0x61, 0x85, 0xc3, 0x2d, 0xd3,
];
pub const LZMA_GUID: [u8; 16] = [
    0x98, 0x58, 0x4e, 0xee, 0x14, 0x39, 0x59, 0x42, 0x9d, 0x6e, 0xdc, 0x7b, 0xd7, 0x94, 0x03, 0xcf,
];

fn sum16(d: &[u8]) -> u16 {
    d.chunks(2).fold(0u16, |a, c| {
        a.wrapping_add(u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
    })
}

fn sum8(d: &[u8]) -> u8 {
    d.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

/// A section: common header plus body.
pub fn section(kind: u8, body: &[u8]) -> Vec<u8> {
    let size = (4 + body.len()) as u32;
    let mut s = size.to_le_bytes()[..3].to_vec();
    s.push(kind);
    s.extend_from_slice(body);
    s
}

/// Concatenates sections with 4-byte alignment.
pub fn stream(sections: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in sections {
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(s);
    }
    out
}

pub fn ui(name: &str) -> Vec<u8> {
    let mut b: Vec<u8> = name.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    b.extend_from_slice(&[0, 0]);
    section(0x15, &b)
}

/// An edk2 LZMA GUID-defined section around `inner` (a section stream).
pub fn lzma_section(inner: &[u8]) -> Vec<u8> {
    let mut c = Vec::new();
    let opts = lzma_rs::compress::Options {
        unpacked_size: lzma_rs::compress::UnpackedSize::WriteToHeader(Some(inner.len() as u64)),
    };
    lzma_rs::lzma_compress_with_options(&mut &inner[..], &mut c, &opts).unwrap();
    let mut body = LZMA_GUID.to_vec();
    body.extend_from_slice(&24u16.to_le_bytes()); // DataOffset
    body.extend_from_slice(&1u16.to_le_bytes()); // PROCESSING_REQUIRED
    body.extend_from_slice(&c);
    section(0x02, &body)
}

/// An FFS file (erase polarity 1, no data checksum).
pub fn file(guid: [u8; 16], kind: u8, data: &[u8]) -> Vec<u8> {
    let size = (24 + data.len()) as u32;
    let mut f = guid.to_vec();
    f.extend_from_slice(&[0, 0xaa, kind, 0]);
    f.extend_from_slice(&size.to_le_bytes()[..3]);
    f.push(0);
    f[16] = 0u8.wrapping_sub(sum8(&f).wrapping_sub(0xaa));
    f[23] = !0x07;
    f.extend_from_slice(data);
    f
}

/// A volume (FFS2, erase polarity 1, one block) holding `files`, 8-byte aligned.
pub fn volume(files: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for f in files {
        while body.len() % 8 != 0 {
            body.push(0xff);
        }
        body.extend_from_slice(f);
    }
    let len = (72 + body.len() + 64).next_multiple_of(8);
    let mut h = vec![0u8; 72];
    h[16..32].copy_from_slice(&FFS2);
    h[32..40].copy_from_slice(&(len as u64).to_le_bytes());
    h[40..44].copy_from_slice(b"_FVH");
    h[44..48].copy_from_slice(&0x0004_feffu32.to_le_bytes());
    h[48..50].copy_from_slice(&72u16.to_le_bytes());
    h[55] = 2;
    h[56..60].copy_from_slice(&1u32.to_le_bytes());
    h[60..64].copy_from_slice(&(len as u32).to_le_bytes());
    let c = 0u16.wrapping_sub(sum16(&h));
    h[50..52].copy_from_slice(&c.to_le_bytes());
    h.extend_from_slice(&body);
    h.resize(len, 0xff);
    h
}

/// A small image shaped like OVMF: an outer volume holding a FIRMWARE_VOLUME_IMAGE file whose
/// LZMA section holds a volume with a DXE driver and an MM driver.
pub fn synthetic() -> Vec<u8> {
    let inner = volume(&[
        file(
            [1; 16],
            0x07,
            &stream(&[section(0x10, b"MZ not really a PE"), ui("Dxe")]),
        ),
        file(
            [2; 16],
            0x0a,
            &stream(&[section(0x1c, &[0x08]), ui("SmmThing")]),
        ),
        file([3; 16], 0xf0, &[0xff; 12]),
    ]);
    let packed = lzma_section(&stream(&[section(0x17, &inner)]));
    let mut img = volume(&[file([9; 16], 0x0b, &packed)]);
    img.extend(volume(&[file([4; 16], 0x01, b"raw reset vector")]));
    img
}
