//! A Rust program with the LeNet-5 model compiled in (see build.rs): runs the MNIST test
//! images from examples/lenet5/ and prints the accuracy.

use std::ffi::c_int;

use mcc_runtime::npy::NpyArray;

/// The model `lenet5_new` returns, opaque to this program as to a C one (`lenet5_model` in
/// lenet5.h): only ever behind a pointer. `repr(C)` with no fields keeps the declarations
/// below FFI-safe (`improper_ctypes`), which the runtime's own Rust type is not.
#[repr(C)]
struct Model {
    _opaque: [u8; 0],
}

unsafe extern "C" {
    fn lenet5_new(threads: c_int) -> *mut Model;
    fn lenet5_run(
        model: *mut Model,
        inputs: *const *const f32,
        outputs: *const *mut f32,
        batch: usize,
    ) -> c_int;
    fn lenet5_free(model: *mut Model);
}

fn main() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../lenet5");
    let x = NpyArray::read(&data.join("mnist_test_x.npy")).expect("images");
    let y = NpyArray::read(&data.join("mnist_test_y.npy")).expect("labels");
    let images: Vec<f32> = x
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let labels: Vec<i64> = y
        .data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let batch = x.shape[0];
    let mut logits = vec![0f32; batch * 10];
    // SAFETY: the functions come from the model object; buffers hold batch × sizes floats.
    let correct = unsafe {
        let model = lenet5_new(0);
        assert!(!model.is_null(), "cannot load the model");
        let rc = lenet5_run(
            model,
            [images.as_ptr()].as_ptr(),
            [logits.as_mut_ptr()].as_ptr(),
            batch,
        );
        lenet5_free(model);
        assert_eq!(rc, 0, "the model failed");
        logits
            .chunks(10)
            .zip(&labels)
            .filter(|(row, l)| {
                let best = row
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0;
                best as i64 == **l
            })
            .count()
    };
    println!(
        "lenet5 from Rust: {batch} samples, accuracy {:.1}%",
        100.0 * correct as f64 / batch as f64
    );
}
