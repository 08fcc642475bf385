"""Spectroscopy: spectrum-image drift measurement and prediction, assembly, ZLP alignment, EELS maps, EEGS."""
