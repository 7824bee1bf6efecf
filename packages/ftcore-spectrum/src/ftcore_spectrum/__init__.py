"""ftcore-spectrum: SNR-targeted layer selection (Hartford et al. 2024, "Spectrum")."""

__version__ = "0.1.1"
