"""One module per CLI verb. Each parses nothing itself (cli.py does), calls the
core, and renders. Imported lazily by cli.py to keep `--help` instant."""
