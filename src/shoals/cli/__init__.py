"""L2 command line (thin: parse -> public API -> reports)."""
