"""Data the quality model is fitted from, and the tools that build it.

* :mod:`sim.dataset.demonstrations` -- the demonstration dataset D (``python -m sim demo-dataset``);
* :mod:`sim.dataset.cache_builder` -- fill a generation cache from any backend (``python -m sim cache build``);
* :mod:`sim.dataset.calibration` -- fit the quality model from D (``python -m sim calibrate``).
"""
