"""The SimPy world and what runs it.

* :mod:`sim.world.simulation` -- :class:`~sim.world.simulation.World`: users, MASPs with GPU queues,
  fading links, service rounds;
* :mod:`sim.world.records` -- the immutable records a run produces and its summary;
* :mod:`sim.world.runner` -- one run into a results directory (``python -m sim run``);
* :mod:`sim.world.compare` -- agents on the same seeds (``python -m sim compare``);
* :mod:`sim.world.report` -- tables, plots and the Markdown reports.
"""
