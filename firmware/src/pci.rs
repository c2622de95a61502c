//! PCI configuration mechanism #1 (ports 0xCF8/0xCFC), bus 0.

use crate::io::{inb, inl, inw, outb, outl, outw};

fn select(dev: u8, func: u8, reg: u8) -> u16 {
    outl(0xcf8, 0x8000_0000 | (dev as u32) << 11 | (func as u32) << 8 | (reg as u32 & 0xfc));
    0xcfc + (reg as u16 & 3)
}

pub fn read8(dev: u8, func: u8, reg: u8) -> u8 {
    inb(select(dev, func, reg))
}

pub fn read16(dev: u8, func: u8, reg: u8) -> u16 {
    inw(select(dev, func, reg))
}

pub fn read32(dev: u8, func: u8, reg: u8) -> u32 {
    inl(select(dev, func, reg))
}

pub fn write8(dev: u8, func: u8, reg: u8, v: u8) {
    outb(select(dev, func, reg), v)
}

pub fn write16(dev: u8, func: u8, reg: u8, v: u16) {
    outw(select(dev, func, reg), v)
}

pub fn write32(dev: u8, func: u8, reg: u8, v: u32) {
    outl(select(dev, func, reg), v)
}
