"""netweave: what netmaster and netplugin share beyond the model (their configuration file)."""
