//! Points the engine's own test and bench binaries at libtorch (an rpath), so they run
//! without LD_LIBRARY_PATH, as the root package's build.rs does for the service binary.
fn main() {
    // torch-sys (links = "tch") exports the libtorch lib folder it linked against.
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
