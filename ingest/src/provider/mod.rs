//! STAC providers: where their APIs are, which asset of which collection holds which of
//! TerraMind's bands, and whether their hrefs need signing.
//!
//! The same collection id means different asset keys at different providers: Earth Search's
//! `sentinel-2-l2a` names its assets by colour (`blue`, `nir08`, `scl`), Planetary Computer's by
//! band (`B02`, `B8A`, `SCL`). Planetary Computer's blob hrefs are private until signed with a
//! SAS token ([`sas`]).

pub mod sas;

use std::fmt;
use std::str::FromStr;

use crate::item::{HrefRewrite, SceneItem};
use crate::{Error, Result};

pub use sas::{SasOptions, SasSigner, SasToken};

/// A STAC API provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Element 84's Earth Search v1 (public `s3`/`https` hrefs on AWS).
    EarthSearch,
    /// Microsoft's Planetary Computer (Azure blob hrefs signed with SAS tokens).
    PlanetaryComputer,
    /// Any other STAC API: asset keys of either convention are tried.
    Generic,
}

/// One band of a modality and the asset key that carries it in one collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetBand {
    /// Band name in TerraMind's band list (`B8A`, `VV`).
    pub band: &'static str,
    /// The item asset key (`nir08`, `vv`).
    pub asset: &'static str,
}

/// The bands of one collection of one provider, in TerraMind's band order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionBands {
    /// Collection id.
    pub collection: &'static str,
    /// TerraMind modality the bands feed (`S2L2A`, `S1GRD`, `S1RTC`).
    pub modality: &'static str,
    /// Bands in TerraMind's order.
    pub bands: &'static [AssetBand],
    /// The scene classification layer, for collections that have one.
    pub scl: Option<AssetBand>,
}

/// A band of an item resolved to its asset href.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BandHref {
    /// Band name (`B02`).
    pub band: &'static str,
    /// Asset key (`blue`).
    pub asset: &'static str,
    /// The asset's href after rewrites.
    pub href: String,
}

const fn ab(band: &'static str, asset: &'static str) -> AssetBand {
    AssetBand { band, asset }
}

/// Earth Search's Sentinel-2 L2A asset keys, in TerraMind's S2L2A order (B10 is not in L2A).
const ES_S2: [AssetBand; 12] = [
    ab("B01", "coastal"),
    ab("B02", "blue"),
    ab("B03", "green"),
    ab("B04", "red"),
    ab("B05", "rededge1"),
    ab("B06", "rededge2"),
    ab("B07", "rededge3"),
    ab("B08", "nir"),
    ab("B8A", "nir08"),
    ab("B09", "nir09"),
    ab("B11", "swir16"),
    ab("B12", "swir22"),
];

/// Planetary Computer's Sentinel-2 L2A asset keys: the band names themselves.
const PC_S2: [AssetBand; 12] = [
    ab("B01", "B01"),
    ab("B02", "B02"),
    ab("B03", "B03"),
    ab("B04", "B04"),
    ab("B05", "B05"),
    ab("B06", "B06"),
    ab("B07", "B07"),
    ab("B08", "B08"),
    ab("B8A", "B8A"),
    ab("B09", "B09"),
    ab("B11", "B11"),
    ab("B12", "B12"),
];

/// Sentinel-1 dual polarisation in TerraMind's S1 order (VV, VH); both providers key the
/// assets `vv` and `vh`.
const S1_VV_VH: [AssetBand; 2] = [ab("VV", "vv"), ab("VH", "vh")];

const EARTH_SEARCH: [CollectionBands; 3] = [
    CollectionBands { collection: "sentinel-2-l2a", modality: "S2L2A", bands: &ES_S2, scl: Some(ab("SCL", "scl")) },
    CollectionBands { collection: "sentinel-2-c1-l2a", modality: "S2L2A", bands: &ES_S2, scl: Some(ab("SCL", "scl")) },
    CollectionBands { collection: "sentinel-1-grd", modality: "S1GRD", bands: &S1_VV_VH, scl: None },
];

const PLANETARY_COMPUTER: [CollectionBands; 2] = [
    CollectionBands { collection: "sentinel-2-l2a", modality: "S2L2A", bands: &PC_S2, scl: Some(ab("SCL", "SCL")) },
    CollectionBands { collection: "sentinel-1-rtc", modality: "S1RTC", bands: &S1_VV_VH, scl: None },
];

impl Provider {
    /// The API root: Earth Search v1 or Planetary Computer's STAC API; none for
    /// [`Provider::Generic`].
    pub const fn default_url(self) -> Option<&'static str> {
        match self {
            Provider::EarthSearch => Some("https://earth-search.aws.element84.com/v1"),
            Provider::PlanetaryComputer => Some("https://planetarycomputer.microsoft.com/api/stac/v1"),
            Provider::Generic => None,
        }
    }

    /// The provider an API root belongs to, by host; [`Provider::Generic`] for any other.
    pub fn from_url(url: &str) -> Self {
        let host = url.split_once("://").map_or(url, |(_, r)| r).split(['/', '?', ':']).next().unwrap_or("");
        match host {
            "earth-search.aws.element84.com" => Provider::EarthSearch,
            "planetarycomputer.microsoft.com" => Provider::PlanetaryComputer,
            _ => Provider::Generic,
        }
    }

    /// The collections whose asset keys are known, each with its bands in TerraMind order.
    pub fn collections(self) -> &'static [CollectionBands] {
        match self {
            Provider::EarthSearch => &EARTH_SEARCH,
            Provider::PlanetaryComputer => &PLANETARY_COMPUTER,
            Provider::Generic => &[],
        }
    }

    /// The bands of `collection`, if the provider's asset keys for it are known.
    pub fn collection(self, collection: &str) -> Option<&'static CollectionBands> {
        self.collections().iter().find(|c| c.collection == collection)
    }

    /// Whether asset hrefs must be signed before they can be read.
    pub const fn signs_hrefs(self) -> bool {
        matches!(self, Provider::PlanetaryComputer)
    }

    /// The bands of `item` (by its collection) in TerraMind order, with their hrefs after
    /// `rewrites`. Fails naming the item when the collection is unknown or an asset is missing.
    pub fn band_hrefs(self, item: &SceneItem, rewrites: &[HrefRewrite]) -> Result<Vec<BandHref>> {
        let collection = item.item.collection.as_deref().unwrap_or("");
        let bands = self.collection(collection).ok_or_else(|| Error::InvalidItem {
            item: item.id().to_string(),
            what: format!(
                "collection {collection:?} has no band table for provider {self} (known: {})",
                self.collections().iter().map(|c| c.collection).collect::<Vec<_>>().join(", ")
            ),
        })?;
        bands.hrefs(item, rewrites)
    }
}

impl CollectionBands {
    /// The hrefs of this collection's bands in `item`, in order, after `rewrites`.
    pub fn hrefs(&self, item: &SceneItem, rewrites: &[HrefRewrite]) -> Result<Vec<BandHref>> {
        self.bands
            .iter()
            .map(|b| {
                let (_, href) = item.asset_href(&[b.asset], rewrites).ok_or_else(|| Error::MissingAsset {
                    item: item.id().to_string(),
                    band: b.band.to_string(),
                    keys: vec![b.asset.to_string()],
                })?;
                Ok(BandHref { band: b.band, asset: b.asset, href })
            })
            .collect()
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::EarthSearch => "earth-search",
            Provider::PlanetaryComputer => "planetary-computer",
            Provider::Generic => "generic",
        })
    }
}

impl FromStr for Provider {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "earth-search" => Ok(Provider::EarthSearch),
            "planetary-computer" => Ok(Provider::PlanetaryComputer),
            "generic" => Ok(Provider::Generic),
            other => Err(Error::Option {
                key: "provider".into(),
                reason: format!("{other:?}: expected earth-search, planetary-computer or generic"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bands::{S2_SCL, S2L2A_BANDS};

    #[test]
    fn sentinel_2_tables_follow_terramind_order_and_the_band_table() {
        for p in [Provider::EarthSearch, Provider::PlanetaryComputer] {
            for c in p.collections().iter().filter(|c| c.modality == "S2L2A") {
                let names: Vec<_> = c.bands.iter().map(|b| b.band).collect();
                let want: Vec<_> = S2L2A_BANDS.iter().map(|b| b.name).collect();
                assert_eq!(names, want, "{p} {}", c.collection);
                for (b, band) in c.bands.iter().zip(S2L2A_BANDS.iter()) {
                    assert!(
                        band.asset_keys.contains(&b.asset),
                        "{p} {}: {} not in {:?}",
                        c.collection,
                        b.asset,
                        band.asset_keys
                    );
                }
                let scl = c.scl.expect("S2 has SCL");
                assert!(S2_SCL.asset_keys.contains(&scl.asset));
            }
        }
    }

    #[test]
    fn names_and_urls_round_trip() {
        for p in [Provider::EarthSearch, Provider::PlanetaryComputer, Provider::Generic] {
            assert_eq!(p.to_string().parse::<Provider>().expect("parse"), p);
            if let Some(url) = p.default_url() {
                assert_eq!(Provider::from_url(url), p);
            }
        }
        assert_eq!(Provider::from_url("http://127.0.0.1:8080"), Provider::Generic);
        assert!("earthsearch".parse::<Provider>().expect_err("typo").to_string().contains("earth-search"));
    }
}
