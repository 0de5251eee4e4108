//! Compiles the engine's C++ (`csrc/`: the fused optimizer steps libtorch ships, which tch
//! does not bind) against the libtorch that torch-sys linked, with the flags torch-sys uses
//! for its own C++, and points the engine's own test and bench binaries at libtorch (an
//! rpath), so they run without LD_LIBRARY_PATH, as the root package's build.rs does for the
//! service binary.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/fused_optim.cpp");
    for var in [
        "LIBTORCH_INCLUDE",
        "LIBTORCH_CXX11_ABI",
        "LIBTORCH_USE_PYTORCH",
        "PYTHON_SYS_EXECUTABLE",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    // torch-sys (links = "tch") exports the libtorch lib folder it linked against; the
    // headers are beside it (a PyTorch wheel's torch/include, a libtorch zip's include)
    // unless LIBTORCH_INCLUDE says otherwise, as for torch-sys.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys exports DEP_TCH_LIBTORCH_LIB (the libtorch it linked)");
    let include = std::env::var_os("LIBTORCH_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(&lib).join(".."))
        .join("include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/fused_optim.cpp")
        .compile("gradstream_fused");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}

/// The C++ ABI libtorch was built with, found as torch-sys finds it: `LIBTORCH_CXX11_ABI`;
/// else, when libtorch comes from PyTorch (`LIBTORCH_USE_PYTORCH`), what its Python says;
/// else the new ABI (PyTorch's wheels from 2.7 on, libtorch's builds).
fn cxx11_abi() -> String {
    if let Ok(v) = std::env::var("LIBTORCH_CXX11_ABI") {
        return v;
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python".into());
        let asked = std::process::Command::new(python)
            .args([
                "-c",
                "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))",
            ])
            .output();
        if let Ok(out) = asked
            && out.status.success()
        {
            let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if v == "0" || v == "1" {
                return v;
            }
        }
    }
    "1".into()
}
