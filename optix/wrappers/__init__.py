"""Wrappers around transforms: per-layer optimizers, masking, accumulation, NaN safety, averaging.

Every name is re-exported from ``optix``.
"""
