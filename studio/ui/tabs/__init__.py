"""One module per tab; each ``create_<tab>_tab`` builds its widgets and listeners."""
