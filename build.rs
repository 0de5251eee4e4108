//! Generates the gRPC code from `proto/` (pure Rust, no protoc) and points the binary's
//! rpath at libtorch so it runs without LD_LIBRARY_PATH.
use std::{env, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["gradstream/v1/trainer.proto"], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Served by the reflection service.
    std::fs::write(out.join("gradstream_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;

    // torch-sys (links = "tch") exports the libtorch lib folder it linked against.
    if let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // Keep libtorch_cuda linked when it exists, so CUDA is usable on GPU machines.
        if PathBuf::from(&lib).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
    Ok(())
}
