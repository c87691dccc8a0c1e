"""L2 reports: tables and plots (plotting libraries are imported lazily)."""
