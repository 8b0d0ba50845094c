//! Device and numeric precision choices.

use tch::{Device, Kind};

/// Numeric precision of the weights and activations.
///
/// `F32` is the reference precision (parity tests). `Bf16` and `F16` halve memory. `Bf16` is
/// fast on CUDA and on CPUs with AMX or AVX512-BF16 (base, batch 1, 2 threads on such a CPU:
/// 23 images/s against 6.8 in float32); on other CPUs it is usually slower than `F32`. Outputs
/// are always returned as float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// float32.
    #[default]
    F32,
    /// bfloat16.
    Bf16,
    /// float16.
    F16,
}

impl Precision {
    /// The libtorch kind.
    pub const fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::F16 => Kind::Half,
        }
    }

    /// Parses `f32`/`fp32`/`float32`, `bf16`/`bfloat16`, `f16`/`fp16`/`float16`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Some(Precision::F32),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            "f16" | "fp16" | "float16" | "half" => Some(Precision::F16),
            _ => None,
        }
    }
}

/// The first CUDA device when libtorch was built with CUDA and one is present, else the CPU.
pub fn default_device() -> Device {
    Device::cuda_if_available()
}
