"""Geometry: GeoJSON points and polygons in WGS-84 inside China, GCJ-02 conversion, areas (CAP polygon or circle)."""
