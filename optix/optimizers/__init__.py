"""Optimizer aliases: each a short ``chain`` of elementary transforms (re-exported from ``optix``)."""
