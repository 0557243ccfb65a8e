"""How much of the text-known optimum a prompt policy can learn from its observation: a supervised ceiling.

Under quality profiles with per-prompt strategy effects (``ratings``, ``paper``) the best strategy
as far as a prompt's text tells (:class:`sim.rl.prompt_expert.ModelExpert`) depends on the prompt's
category and content words. Whether an imitation learner can follow it on prompts it has not seen
depends on its observation of the prompt (:data:`sim.rl.prompt_features.EMBEDDINGS`) and on how many
demonstration prompts it saw, not only on the learning algorithm. :func:`learnability` separates the
two: a multinomial logistic regression (scikit-learn) is taught the optimum's choice on the
demonstration prompts, its L2 strength chosen by 4-fold cross-validation on those prompts only, and is
scored on the held-out prompts beside always strategy 6, the demonstrations' most frequent choice and
the optimum. A learner that imitates the optimum from the same observation should not be expected to
do better than this classifier; one that does much worse is short of what its observation allows.

Scores: ``agreement`` with the optimum's choice, and ``success``, the chance that one image meets
the threshold as far as the text tells (``QualityModel.text_known_success``, mean over the thresholds).

Needs scikit-learn (the ``learn`` extra).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from sim.model.quality import N_STRATEGIES
from sim.rl.prompt_expert import ModelExpert
from sim.rl.prompt_features import prefetch_prompt_vectors, prompt_vector

#: L2 strengths tried by the cross-validation (scikit-learn's ``C``: larger is weaker).
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
#: The paper's empirical strategy.
EMPIRICAL = 6
#: Thresholds of the paper's prompting figures.
THRESHOLDS = (7.5, 8.0, 8.5)


def fit_classifier(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """``(predict, C)``: a multinomial logistic regression of ``y`` on standardised ``x`` with ``C`` from
    :data:`C_GRID` chosen by 4-fold cross-validation on ``(x, y)`` (ties keep the stronger penalty); a
    constant predictor (``C`` NaN) when ``y`` has one label only.

    >>> x = np.array([[0.0], [0.1], [0.2], [0.3], [1.0], [1.1], [1.2], [1.3]])
    >>> predict, c = fit_classifier(x, np.array([0, 0, 0, 0, 6, 6, 6, 6]))
    >>> predict(np.array([[0.05], [1.25]])).tolist()
    [0, 6]
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=float)
    y = np.asarray(y)
    if x.ndim != 2 or len(x) != len(y) or len(y) < 4:
        raise ValueError(f"need x of shape (n, d) and n >= 4 labels, got {x.shape} and {len(y)}")
    labels = np.unique(y)
    if labels.size == 1:
        return (lambda z: np.full(len(z), labels[0])), float("nan")
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    folds = list(KFold(4, shuffle=True, random_state=int(seed)).split(xs))
    best_c, best = C_GRID[0], -1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on tiny folds
        for c in C_GRID:
            hits = 0
            for tr, te in folds:
                if np.unique(y[tr]).size == 1:
                    hits += int(np.sum(y[te] == y[tr][0]))
                    continue
                fold_model = LogisticRegression(C=c, max_iter=2000).fit(xs[tr], y[tr])
                hits += int(np.sum(fold_model.predict(xs[te]) == y[te]))
            if hits > best:
                best_c, best = c, hits
        model = LogisticRegression(C=best_c, max_iter=2000).fit(xs, y)
    return (lambda z: model.predict(scaler.transform(np.asarray(z, dtype=float)))), float(best_c)


def learnability(quality, train: Sequence[str], held_out: Sequence[str], embeddings: Sequence[str] = ("features",),
                 thresholds: Sequence[float] = THRESHOLDS, seed: int = 0, expert=None) -> pd.DataFrame:
    """One row per policy on the ``held_out`` prompts (module docstring): ``always 6``, ``training majority``,
    ``optimum`` and ``classifier (<embedding>)`` for each of ``embeddings``, taught on ``train``.

    Columns: ``policy``, ``agreement``, ``success``, ``C`` (the classifier's tuned strength), ``held_out``.
    ``expert`` (anything with ``action(prompt)``) replaces the optimum that is taught and scored against
    (default :class:`~sim.rl.prompt_expert.ModelExpert` of ``quality``).
    """
    train, held_out = list(train), list(held_out)
    if not train or not held_out:
        raise ValueError("need demonstration and held-out prompts")
    expert = ModelExpert(quality) if expert is None else expert
    optimum = {p: expert.action(p) for p in train + held_out}
    thr = np.asarray(thresholds, dtype=float)
    chance = {p: np.array([float(np.mean(quality.text_known_success(p, s, thr))) for s in range(N_STRATEGIES)])
              for p in held_out}
    y = np.array([optimum[p] for p in train])
    truth = np.array([optimum[p] for p in held_out])
    majority = int(np.bincount(y, minlength=N_STRATEGIES).argmax())
    choices: dict[str, tuple[np.ndarray, float]] = {
        "always 6": (np.full(len(held_out), EMPIRICAL), np.nan),
        "training majority": (np.full(len(held_out), majority), np.nan),
        "optimum": (truth, np.nan),
    }
    for embedding in embeddings:
        prefetch_prompt_vectors(train + held_out, embedding)
        predict, c = fit_classifier(np.stack([prompt_vector(p, embedding) for p in train]), y, seed=seed)
        choices[f"classifier ({embedding})"] = (predict(np.stack([prompt_vector(p, embedding) for p in held_out])), c)
    rows = []
    for policy, (chosen, c) in choices.items():
        chosen = np.asarray(chosen, dtype=int)
        rows.append({"policy": policy, "agreement": float(np.mean(chosen == truth)),
                     "success": float(np.mean([chance[p][s] for p, s in zip(held_out, chosen)])),
                     "C": c, "held_out": len(held_out)})
    return pd.DataFrame(rows)


__all__ = ["C_GRID", "EMPIRICAL", "THRESHOLDS", "fit_classifier", "learnability"]
