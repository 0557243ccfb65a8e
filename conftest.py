import importlib.util

# Keep `python -m sim`'s entry module out of doctest collection: importing it runs the CLI.
collect_ignore = ["sim/__main__.py"]

# Doctests that need an optional package: skipped (not failed) on an install without the `real` extras.
if importlib.util.find_spec("open_clip") is None:  # carries the CLIP BPE vocabulary
    collect_ignore.append("sim/models/clip_vocab.py")
if importlib.util.find_spec("torch") is None:  # the learning extra
    collect_ignore.append("sim/rl/algos/d3pg.py")
    collect_ignore.append("sim/rl/algos/gail.py")
if importlib.util.find_spec("sklearn") is None:  # the learning extra
    collect_ignore.append("sim/rl/prompt_learnability.py")
