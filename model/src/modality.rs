//! The TerraMind v1 modalities: raw image modalities embedded by a patch projection and token
//! modalities embedded by a vocabulary table.

use std::fmt;

use crate::{Error, Result};

/// One TerraMind v1 input or TiM modality.
///
/// Raw image modalities (`S2L2A` … `DEM`) are given as standardized `B x C x H x W` float
/// tensors. Token modalities (`LULC`, `NDVI` and the tokenised `Tok*` ones) are given as
/// `B x h x w` int64 ids on the 16-pixel token grid, and are what TiM generates.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Modality {
    /// Sentinel-2 L2A, 12 bands.
    S2L2A,
    /// Sentinel-2 L1C, 13 bands.
    S2L1C,
    /// Sentinel-2 RGB, 3 bands.
    RGB,
    /// Sentinel-1 GRD, VV and VH.
    S1GRD,
    /// Sentinel-1 RTC, VV and VH.
    S1RTC,
    /// Digital elevation model, 1 band.
    DEM,
    /// Land use / land cover tokens (vocabulary 4375).
    LULC,
    /// NDVI tokens (vocabulary 15360).
    NDVI,
    /// Tokenised Sentinel-2 L2A (vocabulary 15360).
    TokS2L2A,
    /// Tokenised Sentinel-1 GRD (vocabulary 15360).
    TokS1GRD,
    /// Tokenised Sentinel-1 RTC (vocabulary 15360).
    TokS1RTC,
    /// Tokenised DEM (vocabulary 15360).
    TokDEM,
}

/// How a modality enters the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModalityKind {
    /// Pixels, projected patch by patch: `channels` bands.
    Image {
        /// Number of bands of the pre-trained projection.
        channels: i64,
    },
    /// Token ids looked up in a table of `vocab` rows.
    Tokens {
        /// Vocabulary size.
        vocab: i64,
    },
}

const S2L2A_BANDS: &[&str] = &[
    "COASTAL_AEROSOL",
    "BLUE",
    "GREEN",
    "RED",
    "RED_EDGE_1",
    "RED_EDGE_2",
    "RED_EDGE_3",
    "NIR_BROAD",
    "NIR_NARROW",
    "WATER_VAPOR",
    "SWIR_1",
    "SWIR_2",
];
const S2L1C_BANDS: &[&str] = &[
    "COASTAL_AEROSOL",
    "BLUE",
    "GREEN",
    "RED",
    "RED_EDGE_1",
    "RED_EDGE_2",
    "RED_EDGE_3",
    "NIR_BROAD",
    "NIR_NARROW",
    "WATER_VAPOR",
    "CIRRUS",
    "SWIR_1",
    "SWIR_2",
];
const RGB_BANDS: &[&str] = &["RED", "GREEN", "BLUE"];
const S1_BANDS: &[&str] = &["VV", "VH"];
const DEM_BANDS: &[&str] = &["DEM"];

/// Sentinel-2 band codes accepted as aliases of the pre-trained band names.
const S2_CODES: &[(&str, &str)] = &[
    ("B01", "COASTAL_AEROSOL"),
    ("B1", "COASTAL_AEROSOL"),
    ("B02", "BLUE"),
    ("B2", "BLUE"),
    ("B03", "GREEN"),
    ("B3", "GREEN"),
    ("B04", "RED"),
    ("B4", "RED"),
    ("B05", "RED_EDGE_1"),
    ("B5", "RED_EDGE_1"),
    ("B06", "RED_EDGE_2"),
    ("B6", "RED_EDGE_2"),
    ("B07", "RED_EDGE_3"),
    ("B7", "RED_EDGE_3"),
    ("B08", "NIR_BROAD"),
    ("B8", "NIR_BROAD"),
    ("NIR", "NIR_BROAD"),
    ("B8A", "NIR_NARROW"),
    ("B09", "WATER_VAPOR"),
    ("B9", "WATER_VAPOR"),
    ("B10", "CIRRUS"),
    ("B11", "SWIR_1"),
    ("B12", "SWIR_2"),
];

impl Modality {
    /// Every modality, raw image ones first.
    pub const ALL: [Modality; 12] = [
        Modality::S2L2A,
        Modality::S2L1C,
        Modality::RGB,
        Modality::S1GRD,
        Modality::S1RTC,
        Modality::DEM,
        Modality::LULC,
        Modality::NDVI,
        Modality::TokS2L2A,
        Modality::TokS1GRD,
        Modality::TokS1RTC,
        Modality::TokDEM,
    ];

    /// The user-facing name, unique per modality: `S2L2A`, …, `LULC`, `NDVI`, `TOK_S2L2A`, ….
    /// Raw image names are the input tensor names of the fixtures.
    pub const fn name(self) -> &'static str {
        match self {
            Modality::S2L2A => "S2L2A",
            Modality::S2L1C => "S2L1C",
            Modality::RGB => "RGB",
            Modality::S1GRD => "S1GRD",
            Modality::S1RTC => "S1RTC",
            Modality::DEM => "DEM",
            Modality::LULC => "LULC",
            Modality::NDVI => "NDVI",
            Modality::TokS2L2A => "TOK_S2L2A",
            Modality::TokS1GRD => "TOK_S1GRD",
            Modality::TokS1RTC => "TOK_S1RTC",
            Modality::TokDEM => "TOK_DEM",
        }
    }

    /// The name of a token modality as a TiM target (`LULC`, `NDVI`, `S2`, `S1GRD`, `S1RTC`,
    /// `DEM`), used in output names such as `tim_LULC_ids`. Image modalities return `name()`.
    pub const fn tim_name(self) -> &'static str {
        match self {
            Modality::TokS2L2A => "S2",
            Modality::TokS1GRD => "S1GRD",
            Modality::TokS1RTC => "S1RTC",
            Modality::TokDEM => "DEM",
            other => other.name(),
        }
    }

    /// The internal key, which is also the checkpoint prefix under `encoder_embeddings.` and
    /// `decoder_embeddings.`: `untok_sen2l2a@224`, `tok_lulc@224`, ….
    pub const fn key(self) -> &'static str {
        match self {
            Modality::S2L2A => "untok_sen2l2a@224",
            Modality::S2L1C => "untok_sen2l1c@224",
            Modality::RGB => "untok_sen2rgb@224",
            Modality::S1GRD => "untok_sen1grd@224",
            Modality::S1RTC => "untok_sen1rtc@224",
            Modality::DEM => "untok_dem@224",
            Modality::LULC => "tok_lulc@224",
            Modality::NDVI => "tok_ndvi@224",
            Modality::TokS2L2A => "tok_sen2l2a@224",
            Modality::TokS1GRD => "tok_sen1grd@224",
            Modality::TokS1RTC => "tok_sen1rtc@224",
            Modality::TokDEM => "tok_dem@224",
        }
    }

    /// Image or tokens, with the channel count or vocabulary size.
    pub const fn kind(self) -> ModalityKind {
        match self {
            Modality::S2L2A => ModalityKind::Image { channels: 12 },
            Modality::S2L1C => ModalityKind::Image { channels: 13 },
            Modality::RGB => ModalityKind::Image { channels: 3 },
            Modality::S1GRD | Modality::S1RTC => ModalityKind::Image { channels: 2 },
            Modality::DEM => ModalityKind::Image { channels: 1 },
            Modality::LULC => ModalityKind::Tokens { vocab: 4375 },
            Modality::NDVI
            | Modality::TokS2L2A
            | Modality::TokS1GRD
            | Modality::TokS1RTC
            | Modality::TokDEM => ModalityKind::Tokens { vocab: 15360 },
        }
    }

    /// Pre-trained channel count of a raw image modality; `None` for token modalities.
    pub const fn channels(self) -> Option<i64> {
        match self.kind() {
            ModalityKind::Image { channels } => Some(channels),
            ModalityKind::Tokens { .. } => None,
        }
    }

    /// Vocabulary size of a token modality; `None` for raw image modalities.
    pub const fn vocab_size(self) -> Option<i64> {
        match self.kind() {
            ModalityKind::Tokens { vocab } => Some(vocab),
            ModalityKind::Image { .. } => None,
        }
    }

    /// Whether the modality is given as pixels.
    pub const fn is_image(self) -> bool {
        matches!(self.kind(), ModalityKind::Image { .. })
    }

    /// The pre-trained band order of a raw image modality (terratorch's `PRETRAINED_BANDS`);
    /// empty for token modalities.
    pub const fn bands(self) -> &'static [&'static str] {
        match self {
            Modality::S2L2A => S2L2A_BANDS,
            Modality::S2L1C => S2L1C_BANDS,
            Modality::RGB => RGB_BANDS,
            Modality::S1GRD | Modality::S1RTC => S1_BANDS,
            Modality::DEM => DEM_BANDS,
            _ => &[],
        }
    }

    /// The index of `band` in [`Modality::bands`]. Accepts the pre-trained names
    /// (case-insensitive) and, for Sentinel-2, the band codes `B01` … `B12`, `B8A`.
    pub fn band_index(self, band: &str) -> Result<usize> {
        let upper = band.trim().to_ascii_uppercase();
        let name = match self {
            Modality::S2L2A | Modality::S2L1C | Modality::RGB => S2_CODES
                .iter()
                .find(|(code, _)| *code == upper)
                .map_or(upper.as_str(), |(_, name)| name),
            _ => upper.as_str(),
        };
        self.bands()
            .iter()
            .position(|b| *b == name)
            .ok_or_else(|| Error::UnknownBand {
                modality: self.name().to_string(),
                band: band.to_string(),
                known: self.bands().join(", "),
            })
    }

    /// Parses a modality from its [`name`](Modality::name) or [`key`](Modality::key),
    /// case-insensitively. `S2`, `S1` and `S1GRD` name the raw modalities here; use
    /// [`Modality::tim_target`] for TiM target names.
    pub fn from_name(name: &str) -> Result<Self> {
        let n = name.trim();
        Modality::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(n) || m.key().eq_ignore_ascii_case(n))
            .or(match n.to_ascii_uppercase().as_str() {
                "S2" | "SEN2L2A" => Some(Modality::S2L2A),
                "SEN2L1C" => Some(Modality::S2L1C),
                "S2RGB" => Some(Modality::RGB),
                "S1" | "SEN1GRD" => Some(Modality::S1GRD),
                "SEN1RTC" => Some(Modality::S1RTC),
                _ => None,
            })
            .ok_or_else(|| Error::UnknownModality(name.to_string()))
    }

    /// Parses a TiM target: `LULC`, `NDVI`, `S2`/`S2L2A`, `S1`/`S1GRD`, `S1RTC`, `DEM`, or any
    /// token modality's name or key. Always returns a token modality.
    pub fn tim_target(name: &str) -> Result<Self> {
        let m = Modality::from_name(name)?;
        m.tokenised()
            .ok_or_else(|| Error::UnknownModality(name.to_string()))
    }

    /// The token modality that stands for this one: itself for token modalities, `TokS2L2A`
    /// for S2L2A, …; `None` for raw modalities without a tokenizer (S2L1C, RGB).
    pub const fn tokenised(self) -> Option<Self> {
        match self {
            Modality::S2L2A => Some(Modality::TokS2L2A),
            Modality::S1GRD => Some(Modality::TokS1GRD),
            Modality::S1RTC => Some(Modality::TokS1RTC),
            Modality::DEM => Some(Modality::TokDEM),
            Modality::S2L1C | Modality::RGB => None,
            token => Some(token),
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Modality {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Modality::from_name(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Modality::ALL {
            assert_eq!(Modality::from_name(m.name()).ok(), Some(m));
            assert_eq!(Modality::from_name(m.key()).ok(), Some(m));
        }
        assert!(matches!(
            Modality::from_name("S3"),
            Err(Error::UnknownModality(_))
        ));
    }

    #[test]
    fn tim_targets() {
        assert_eq!(Modality::tim_target("LULC").ok(), Some(Modality::LULC));
        assert_eq!(Modality::tim_target("S2").ok(), Some(Modality::TokS2L2A));
        assert_eq!(Modality::tim_target("S1GRD").ok(), Some(Modality::TokS1GRD));
        assert_eq!(Modality::TokS2L2A.tim_name(), "S2");
        assert!(Modality::tim_target("RGB").is_err());
    }

    #[test]
    fn bands() {
        assert_eq!(Modality::S2L2A.band_index("B8A").ok(), Some(8));
        assert_eq!(Modality::S2L2A.band_index("nir_broad").ok(), Some(7));
        assert_eq!(Modality::S1GRD.band_index("VH").ok(), Some(1));
        assert!(matches!(
            Modality::S2L2A.band_index("CIRRUS"),
            Err(Error::UnknownBand { .. })
        ));
    }
}
