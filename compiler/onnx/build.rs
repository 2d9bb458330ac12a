//! Compiles `proto/onnx.proto` (copied from the `onnx` 1.23.2 wheel) with protox + prost-build,
//! so building mcc needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
