"""Reinforcement learning on the simulator's decision problems.

* :mod:`sim.rl.provisioning_env` -- ``sim/Provisioning-v0``: one MASP's provisioning decision per step;
* :mod:`sim.rl.prompt_env` -- ``sim/Prompt-v0``: one user's prompt strategy per service round;
* :mod:`sim.rl.features`, :mod:`sim.rl.prompt_features` -- observations and actions, shared with the
  agents that run trained policies in the world;
* :mod:`sim.rl.checkpoints` -- saving and loading trained policies;
* :mod:`sim.rl.training`, :mod:`sim.rl.prompt_training` -- training loops (``python -m sim train``,
  ``train-prompt``); :mod:`sim.rl.evaluation`, :mod:`sim.rl.prompt_evaluation` -- evaluation;
  :mod:`sim.rl.prompt_expert` -- the expert and the prompt split;
* :mod:`sim.rl.algos` -- D3PG and GAIL.

Importing this package registers the environments with gymnasium (by entry-point
string: no environment module is imported until ``gymnasium.make``). It does not
import torch, stable-baselines3 or matplotlib.
"""

from sim.rl.registration import register_envs

register_envs()
