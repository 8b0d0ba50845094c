//! Bakes libtorch's library directory into this crate's binaries and tests as an rpath, so they
//! run without `LD_LIBRARY_PATH`. torch-sys (`links = "tch"`) reports where it found libtorch.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
