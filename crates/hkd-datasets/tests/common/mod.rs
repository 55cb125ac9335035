//! Helpers shared by the integration tests: small .npy/.bin/.png writers and the
//! location of the shared real data.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

pub use hkd_test_support::write_npy_raw;

pub fn write_u8(path: &Path, shape: &[usize], data: &[u8]) {
    write_npy_raw(path, "|u1", shape, data);
}

pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy_raw(path, "<f4", shape, &bytes);
}

pub fn write_f64(path: &Path, shape: &[usize], data: &[f64]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy_raw(path, "<f8", shape, &bytes);
}

pub fn write_i32(path: &Path, shape: &[usize], data: &[i32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy_raw(path, "<i4", shape, &bytes);
}

pub fn write_i64(path: &Path, shape: &[usize], data: &[i64]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy_raw(path, "<i8", shape, &bytes);
}

/// Deterministic pseudo-random HWC images: pixel value depends on (image, y, x, c).
pub fn hwc_images(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 3072);
    for i in 0..n {
        for y in 0..32 {
            for x in 0..32 {
                for c in 0..3 {
                    let v = (i * 7919 + y * 131 + x * 31 + c * 17 + (x * y) % 13) % 256;
                    out.push(v as u8);
                }
            }
        }
    }
    out
}

/// HWC -> CHW for n images.
pub fn to_chw(hwc: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; hwc.len()];
    for (i, img) in hwc.chunks_exact(3072).enumerate() {
        for p in 0..1024 {
            for c in 0..3 {
                out[i * 3072 + c * 1024 + p] = img[p * 3 + c];
            }
        }
    }
    out
}

/// Labels 0,1,..,9,0,1,...
pub fn cyclic_labels(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 10) as u8).collect()
}

/// Human rows: 0.8 on the label, 0.2 on the next class (or 1.0 on the label for every 3rd row).
pub fn human_rows(labels: &[u8]) -> Vec<f64> {
    let mut out = vec![0f64; labels.len() * 10];
    for (i, &l) in labels.iter().enumerate() {
        if i % 3 == 0 {
            out[i * 10 + l as usize] = 1.0;
        } else {
            out[i * 10 + l as usize] = 0.8;
            out[i * 10 + (l as usize + 1) % 10] = 0.2;
        }
    }
    out
}

/// Writes a CIFAR-10 binary batch file from HWC images and labels.
pub fn write_cifar_bin(path: &Path, hwc: &[u8], labels: &[u8]) {
    let chw = to_chw(hwc);
    let mut out = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        out.push(l);
        out.extend_from_slice(&chw[i * 3072..(i + 1) * 3072]);
    }
    std::fs::write(path, out).unwrap();
}

/// Writes a 32×32 RGB PNG.
pub fn write_png(path: &Path, hwc: &[u8]) {
    image::save_buffer(path, hwc, 32, 32, image::ExtendedColorType::Rgb8).unwrap();
}

pub use hkd_test_support::workspace_root;

/// The real data of ../shared (see [`hkd_test_support::shared_data_for`]).
pub fn shared_data(test: &str) -> Option<PathBuf> {
    hkd_test_support::shared_data_for(test, "cifar10h/cifar10h-probs.npy")
}
