"""Learning algorithms written for this simulator (PPO and SAC come from stable-baselines3).

* :mod:`sim.rl.algos.d3pg` -- D3PG: DDPG whose actor is a denoising diffusion model, and its MLP-actor ablation;
* :mod:`sim.rl.algos.gail` -- GAIL with a stable-baselines3 PPO generator.

Both need torch (the ``learn`` extra).
"""
