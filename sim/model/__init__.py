"""The maths core: channel, quality model, QoE and the rules of one service round.

Pure functions and small dataclasses, no SimPy and no gymnasium: everything
above (the world, the environments, the agents, the dataset tools) calls these,
and nothing here imports them (``tests/test_architecture.py`` checks it).

* :mod:`sim.model.channel` -- path loss, shadowing, Nakagami-m fading, BER, bit flips, rate;
* :mod:`sim.model.quality` -- generation scores per prompt and strategy, bit-error damage;
* :mod:`sim.model.qoe` -- QoE, cost and utility (eqs. 22-24);
* :mod:`sim.model.service` -- the round rules: power budget, GPU queue, BER model,
  transmission, damage, and the models one round runs on.
"""
