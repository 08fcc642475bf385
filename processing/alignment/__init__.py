"""Alignment: image registration (phase correlation, overlap-normalised cross-correlation), SDSD."""
