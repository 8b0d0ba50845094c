//! The GeoParquet 1.1 `geo` file metadata.

use serde_json::json;
use terrastream_ingest::schema::{BBOX, GEOMETRY};

use super::config::GeometryEncoding;

/// The `geo` metadata of a file whose footprints span `bbox` (`[xmin, ymin, xmax, ymax]`,
/// degrees): one Polygon column in EPSG:4326 (PROJJSON), `WKB` or GeoArrow `polygon`
/// encoded, with the `bbox` struct column as its covering.
pub fn geo_metadata(bbox: [f64; 4], encoding: GeometryEncoding) -> serde_json::Value {
    let encoding = match encoding {
        GeometryEncoding::Wkb => "WKB",
        GeometryEncoding::Geoarrow => "polygon",
    };
    json!({
        "version": "1.1.0",
        "primary_column": GEOMETRY,
        "columns": {
            GEOMETRY: {
                "encoding": encoding,
                "geometry_types": ["Polygon"],
                "crs": crate::crs::epsg_4326(),
                "orientation": "counterclockwise",
                "edges": "planar",
                "bbox": bbox,
                "covering": {"bbox": {
                    "xmin": [BBOX, "xmin"], "ymin": [BBOX, "ymin"],
                    "xmax": [BBOX, "xmax"], "ymax": [BBOX, "ymax"]
                }}
            }
        }
    })
}
