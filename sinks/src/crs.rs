//! PROJJSON for CRSs. GeoParquet requires PROJJSON: an `"EPSG:4326"` string is not valid there
//! and is dropped by readers.

use serde_json::{Value, json};

/// PROJJSON of EPSG:4326 (WGS 84). In GeoParquet, coordinates stay in longitude, latitude
/// order whatever the CRS's axis order says.
pub fn epsg_4326() -> Value {
    json!({
        "$schema": "https://proj.org/schemas/v0.7/projjson.schema.json",
        "type": "GeographicCRS",
        "name": "WGS 84",
        "datum": {
            "type": "GeodeticReferenceFrame",
            "name": "World Geodetic System 1984",
            "ellipsoid": {"name": "WGS 84", "semi_major_axis": 6378137, "inverse_flattening": 298.257223563}
        },
        "coordinate_system": {
            "subtype": "ellipsoidal",
            "axis": [
                {"name": "Geodetic latitude", "abbreviation": "Lat", "direction": "north", "unit": "degree"},
                {"name": "Geodetic longitude", "abbreviation": "Lon", "direction": "east", "unit": "degree"}
            ]
        },
        "id": {"authority": "EPSG", "code": 4326}
    })
}
