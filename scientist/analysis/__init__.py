"""Analyses of candidates that need no training: drift landscapes and their features."""

from scientist.analysis.drift_features import DriftFeatures, SideFeatures, detect_features

__all__ = ["DriftFeatures", "SideFeatures", "detect_features"]
