//! Each binary gets its own linker script.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-arg-bin=boot=-T{dir}/boot.ld");
    println!("cargo:rustc-link-arg-bin=smm=-T{dir}/smm.ld");
    println!("cargo:rerun-if-changed=boot.ld");
    println!("cargo:rerun-if-changed=smm.ld");
}
