//! GeoJSON/AOI handling: any JSON as a flood event's area of interest. A refusal is fine; a
//! panic, an abort or a hang (the self-crossing check is quadratic in the ring length, bounded
//! by the vertex limit) is a bug. What it accepts must measure and box without NaN.

#![no_main]

use libfuzzer_sys::fuzz_target;
use terrastream::flood::aoi::Aoi;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(aoi) = Aoi::from_geojson(&v, "aoi") {
        let area = aoi.area_km2();
        assert!(
            area.is_finite() && area >= 0.0,
            "area {area} of an accepted AOI"
        );
        let [w, s, e, n] = aoi.bbox();
        assert!(w <= e && s <= n, "bbox {w} {s} {e} {n} of an accepted AOI");
        let again = Aoi::from_geojson(&aoi.to_geojson(), "aoi")
            .expect("an accepted AOI, written out, reads back");
        assert_eq!(again, aoi);
    }
});
