"""L1 no-arbitrage checks (butterfly, calendar) and repair of SVI surfaces."""
