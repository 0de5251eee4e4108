//! Compiles the engine's C++ (`csrc/`: the fused optimizer steps libtorch ships, which tch
//! does not bind) against the libtorch that torch-sys linked, and points the engine's own
//! test and bench binaries at libtorch (an rpath), so they run without LD_LIBRARY_PATH, as
//! the root package's build.rs does for the service binary.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/fused_optim.cpp");
    // torch-sys (links = "tch") exports the libtorch lib folder it linked against; the
    // headers are beside it (a PyTorch wheel's torch/include, a libtorch zip's include).
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys exports DEP_TCH_LIBTORCH_LIB (the libtorch it linked)");
    let include = PathBuf::from(&lib).join("..").join("include");
    let abi = cxx11_abi();
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .file("csrc/fused_optim.cpp")
        .compile("gradstream_fused");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}

/// The C++ ABI of libtorch: `LIBTORCH_CXX11_ABI` when set (as for torch-sys), else the
/// new ABI, which PyTorch's wheels (2.7 on) and libtorch's builds use.
fn cxx11_abi() -> String {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into())
}
