//! The chip-batch schema: the contract between source, operators and sinks.
//!
//! One row per chip. Pixel columns are Arrow canonical `arrow.fixed_shape_tensor` extension
//! columns of Float32 with shape `[C, H, W]` (row-major), holding physical values (Sentinel-2
//! L2A digital numbers, Sentinel-1 dB, DEM metres) with NaN where the source had no data.
//! Operators add columns (e.g. [`EMBEDDING`]); sinks drop the pixel columns.
//!
//! The schema is versioned with [`CHIP_SCHEMA_VERSION`], stored in the schema metadata under
//! [`SCHEMA_VERSION_KEY`]; bump it when a column changes meaning or type.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Version of the chip-batch schema.
pub const CHIP_SCHEMA_VERSION: u32 = 1;
/// Schema-metadata key that holds [`CHIP_SCHEMA_VERSION`].
pub const SCHEMA_VERSION_KEY: &str = "terrastream:chip_schema_version";

/// Identity: the STAC item id of the scene the chip was cut from (Utf8, not null).
pub const SCENE_ID: &str = "scene_id";
/// Identity: the STAC collection of the scene, e.g. `sentinel-2-l2a` (Utf8, nullable).
pub const COLLECTION: &str = "collection";
/// Identity: acquisition time of the scene (Timestamp µs, UTC, not null).
pub const DATETIME: &str = "datetime";
/// Identity: the grid tile the scene belongs to, e.g. `MGRS-29RKH` (Utf8, nullable).
pub const GRID_ID: &str = "grid_id";
/// Identity: row of the chip in the scene's chip grid, from the top (Int32, not null).
pub const CHIP_ROW: &str = "chip_row";
/// Identity: column of the chip in the scene's chip grid, from the left (Int32, not null).
pub const CHIP_COL: &str = "chip_col";
/// Geo: EPSG code of the chip's pixel grid, e.g. 32629 (Int32, not null).
pub const CRS: &str = "crs";
/// Geo: affine transform of the chip in GDAL GeoTransform order
/// `[x_origin, pixel_width, row_rotation, y_origin, column_rotation, pixel_height]`, in units
/// of [`CRS`] (metres for UTM); `pixel_height` is negative for north-up grids
/// (FixedSizeList<Float64, 6>, not null).
pub const TRANSFORM: &str = "transform";
/// Geo: chip footprint polygon as WKB, longitude/latitude in EPSG:4326 (Binary, not null).
pub const GEOMETRY: &str = "geometry";
/// Geo: bounding box of [`GEOMETRY`] in degrees, `{xmin, ymin, xmax, ymax}` (Struct of
/// Float64, not null); the GeoParquet 1.1 bbox covering column.
pub const BBOX: &str = "bbox";
/// Quality: fraction of the chip's pixels that have data in every band of every pixel column,
/// 0..=1 (Float32). With a Sentinel-1 column next to the Sentinel-2 one, a pixel that has
/// Sentinel-2 data but no Sentinel-1 data (outside the swath, GRD border) is not valid: the
/// model sees both modalities at once, so one threshold on this column filters for both.
pub const VALID_FRACTION: &str = "valid_fraction";
/// Quality: fraction of valid pixels classed as cloud, cloud shadow or cirrus by the scene
/// classification layer, 0..=1; null when the scene has no such layer (Float32, nullable).
pub const CLOUD_FRACTION: &str = "cloud_fraction";
/// Added by the embed operator: the chip embedding, the mean over tokens of the encoder's last
/// layer (FixedSizeList<Float32, D>).
pub const EMBEDDING: &str = "embedding";

/// Arrow extension-type name of tensor columns.
pub const TENSOR_EXTENSION: &str = "arrow.fixed_shape_tensor";

/// A pixel column: a modality's name and the shape of each chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelColumn {
    /// Column name, equal to the modality name (`S2L2A`, `S1GRD`, ...).
    pub name: String,
    /// Channels (bands), in the model's band order.
    pub channels: usize,
    /// Chip height in pixels.
    pub height: usize,
    /// Chip width in pixels.
    pub width: usize,
}

impl PixelColumn {
    /// Values per chip (`C * H * W`).
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// True when the column holds no values per chip.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `arrow.fixed_shape_tensor` Float32 field of the given shape.
pub fn tensor_field(name: &str, shape: &[usize]) -> Field {
    let len: usize = shape.iter().product();
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let metadata = HashMap::from([
        ("ARROW:extension:name".to_string(), TENSOR_EXTENSION.to_string()),
        ("ARROW:extension:metadata".to_string(), format!("{{\"shape\":[{}]}}", dims.join(","))),
    ]);
    Field::new(name, fixed_list(DataType::Float32, len), false).with_metadata(metadata)
}

/// The shape `[C, H, W]` of a tensor field, read from its extension metadata.
pub fn tensor_shape(field: &Field) -> Option<Vec<usize>> {
    let meta = field.metadata().get("ARROW:extension:metadata")?;
    let value: serde_json::Value = serde_json::from_str(meta).ok()?;
    value.get("shape")?.as_array()?.iter().map(|d| d.as_u64().map(|d| d as usize)).collect()
}

/// The [`EMBEDDING`] field for embeddings of `dim` values.
pub fn embedding_field(dim: usize) -> Field {
    Field::new(EMBEDDING, fixed_list(DataType::Float32, dim), false)
}

/// `FixedSizeList<item>` of `len` non-null items.
pub fn fixed_list(item: DataType, len: usize) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", item, false)), len as i32)
}

/// The fields of [`BBOX`].
pub fn bbox_fields() -> Fields {
    Fields::from(vec![
        Field::new("xmin", DataType::Float64, false),
        Field::new("ymin", DataType::Float64, false),
        Field::new("xmax", DataType::Float64, false),
        Field::new("ymax", DataType::Float64, false),
    ])
}

/// Identity and geo fields, in column order.
pub fn key_fields() -> Vec<Field> {
    vec![
        Field::new(SCENE_ID, DataType::Utf8, false),
        Field::new(COLLECTION, DataType::Utf8, true),
        Field::new(DATETIME, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new(GRID_ID, DataType::Utf8, true),
        Field::new(CHIP_ROW, DataType::Int32, false),
        Field::new(CHIP_COL, DataType::Int32, false),
        Field::new(CRS, DataType::Int32, false),
        Field::new(TRANSFORM, fixed_list(DataType::Float64, 6), false),
        Field::new(GEOMETRY, DataType::Binary, false),
        Field::new(BBOX, DataType::Struct(bbox_fields()), false),
    ]
}

/// Quality fields, in column order.
pub fn quality_fields() -> Vec<Field> {
    vec![
        Field::new(VALID_FRACTION, DataType::Float32, false),
        Field::new(CLOUD_FRACTION, DataType::Float32, true),
    ]
}

/// Schema metadata carrying the schema version.
pub fn schema_metadata() -> HashMap<String, String> {
    HashMap::from([(SCHEMA_VERSION_KEY.to_string(), CHIP_SCHEMA_VERSION.to_string())])
}

/// The schema of chip batches as the source emits them: identity, geo, one tensor column per
/// pixel column, quality.
pub fn chip_schema(pixels: &[PixelColumn]) -> SchemaRef {
    let mut fields = key_fields();
    fields.extend(pixels.iter().map(|p| tensor_field(&p.name, &[p.channels, p.height, p.width])));
    fields.extend(quality_fields());
    Arc::new(Schema::new_with_metadata(fields, schema_metadata()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_fields_carry_their_shape() {
        let schema = chip_schema(&[PixelColumn { name: "S2L2A".into(), channels: 12, height: 224, width: 224 }]);
        let field = schema.field_with_name("S2L2A").expect("pixel column");
        assert_eq!(tensor_shape(field), Some(vec![12, 224, 224]));
        assert_eq!(field.data_type(), &fixed_list(DataType::Float32, 12 * 224 * 224));
        assert_eq!(schema.metadata()[SCHEMA_VERSION_KEY], CHIP_SCHEMA_VERSION.to_string());
        for name in [SCENE_ID, DATETIME, CHIP_ROW, CHIP_COL, CRS, TRANSFORM, GEOMETRY, VALID_FRACTION] {
            assert!(schema.field_with_name(name).is_ok(), "{name}");
        }
    }
}
