# Keep `python -m sim`'s entry module out of doctest collection: importing it runs the CLI.
collect_ignore = ["sim/__main__.py"]
