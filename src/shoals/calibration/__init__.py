"""L1 calibration: quotes -> forwards -> smiles -> SVI surface."""
