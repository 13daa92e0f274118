"""Elementary gradient transformations, one module per family (re-exported from ``optix``)."""
