"""Radar data: formats, decoding, beam geometry, reflectivity to rain rate, gridding."""
