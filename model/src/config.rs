//! Model configurations of the four TerraMind v1 variants.

use serde::Deserialize;

use crate::{Error, Result};

/// The feed-forward block of the transformer layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MlpKind {
    /// `fc2(GELU(fc1 x))` with the exact erf GELU (tiny, small).
    Gelu,
    /// `fc2(SiLU(fc1 x) * fc3 x)` (base, large).
    Swiglu,
}

/// Hyper-parameters of a TerraMind v1 model, mirroring terratorch's constructor arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Token width D.
    pub dim: i64,
    /// Number of encoder blocks.
    pub encoder_depth: usize,
    /// Number of decoder blocks (used by TiM only).
    pub decoder_depth: usize,
    /// Attention heads; `dim` must be a multiple of it.
    pub num_heads: i64,
    /// Feed-forward kind.
    pub mlp: MlpKind,
    /// Hidden width of the feed-forward block: 4D for GELU, `int(8D/3)` for SwiGLU.
    pub mlp_hidden: i64,
    /// Whether `qkv`, `q` and `kv` have biases.
    pub qkv_bias: bool,
    /// Whether the attention output projections have biases.
    pub proj_bias: bool,
    /// Whether the feed-forward linears have biases.
    pub mlp_bias: bool,
    /// Patch size in pixels.
    #[serde(default = "default_patch")]
    pub patch_size: i64,
    /// Image size the stored positional tables were built for.
    #[serde(default = "default_image")]
    pub image_size: i64,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

const fn default_patch() -> i64 {
    16
}
const fn default_image() -> i64 {
    224
}
const fn default_eps() -> f64 {
    1e-6
}

impl Config {
    fn gelu(dim: i64, encoder_depth: usize, decoder_depth: usize, num_heads: i64) -> Self {
        Config {
            dim,
            encoder_depth,
            decoder_depth,
            num_heads,
            mlp: MlpKind::Gelu,
            mlp_hidden: 4 * dim,
            qkv_bias: true,
            proj_bias: true,
            mlp_bias: true,
            patch_size: default_patch(),
            image_size: default_image(),
            layer_norm_eps: default_eps(),
        }
    }

    fn swiglu(dim: i64, encoder_depth: usize, decoder_depth: usize, num_heads: i64) -> Self {
        Config {
            mlp: MlpKind::Swiglu,
            mlp_hidden: 8 * dim / 3,
            qkv_bias: false,
            proj_bias: false,
            mlp_bias: false,
            ..Config::gelu(dim, encoder_depth, decoder_depth, num_heads)
        }
    }

    /// TerraMind v1 tiny: D 192, 12/4 blocks, 3 heads, GELU 768 with biases.
    pub fn tiny() -> Self {
        Config::gelu(192, 12, 4, 3)
    }

    /// TerraMind v1 small: D 384, 12/6 blocks, 6 heads, GELU 1536 with biases.
    pub fn small() -> Self {
        Config::gelu(384, 12, 6, 6)
    }

    /// TerraMind v1 base: D 768, 12/12 blocks, 12 heads, SwiGLU 2048, no biases.
    pub fn base() -> Self {
        Config::swiglu(768, 12, 12, 12)
    }

    /// TerraMind v1 large: D 1024, 24/24 blocks, 16 heads, SwiGLU 2730, no biases.
    pub fn large() -> Self {
        Config::swiglu(1024, 24, 24, 16)
    }

    /// The configuration of a variant by name: `tiny`, `small`, `base`, `large`, also as
    /// `terramind_v1_<variant>` or `TerraMind_v1_<variant>`.
    pub fn variant(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        match lower.strip_prefix("terramind_v1_").unwrap_or(&lower) {
            "tiny" => Ok(Config::tiny()),
            "small" => Ok(Config::small()),
            "base" => Ok(Config::base()),
            "large" => Ok(Config::large()),
            _ => Err(Error::UnknownVariant(name.to_string())),
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.dim / self.num_heads.max(1)
    }

    /// Checks the values that the layers rely on.
    pub fn validate(&self) -> Result<()> {
        let fail = |what: &str| Err(Error::Config(what.to_string()));
        if self.dim <= 0 || self.dim % 4 != 0 {
            return fail("dim must be a positive multiple of 4 (2-D sin-cos table)");
        }
        if self.num_heads <= 0 || self.dim % self.num_heads != 0 {
            return fail("dim must be a multiple of num_heads");
        }
        if self.encoder_depth == 0 {
            return fail("encoder_depth must be at least 1");
        }
        if self.mlp_hidden <= 0 || self.patch_size <= 0 || self.image_size % self.patch_size != 0 {
            return fail(
                "mlp_hidden and patch_size must be positive, image_size a multiple of patch_size",
            );
        }
        Ok(())
    }

    /// Side of the stored positional grid (14 for 224 / 16).
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants() {
        assert_eq!(Config::base().mlp_hidden, 2048);
        assert_eq!(Config::large().mlp_hidden, 2730);
        assert_eq!(Config::tiny().mlp_hidden, 768);
        assert_eq!(
            Config::variant("TerraMind_v1_small").ok(),
            Some(Config::small())
        );
        assert!(matches!(
            Config::variant("huge"),
            Err(Error::UnknownVariant(_))
        ));
        for c in [
            Config::tiny(),
            Config::small(),
            Config::base(),
            Config::large(),
        ] {
            assert!(c.validate().is_ok());
        }
    }

    #[test]
    fn deserialize() -> std::result::Result<(), serde_json::Error> {
        let c: Config = serde_json::from_str(
            r#"{"dim":192,"encoder_depth":12,"decoder_depth":4,"num_heads":3,"mlp":"gelu",
                "mlp_hidden":768,"qkv_bias":true,"proj_bias":true,"mlp_bias":true}"#,
        )?;
        assert_eq!(c, Config::tiny());
        Ok(())
    }
}
