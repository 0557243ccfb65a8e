"""The quality model: what score (0-10) an image gets, and how much of it survives bit errors.

Two parts, each loaded from a YAML file shipped in ``sim/data``:

**Generation** (``quality_generation.yaml``, written by
``scripts/derive_quality_stats.py`` from real human ratings of Stable Diffusion
images; where every number comes from is in ``docs/quality_model.md``). The
assessor's score of image ``k`` of raw prompt ``p`` under prompt-engineering
strategy ``s`` (Table II of the D3PG paper, 0 raw ... 6 + negative effects) is::

    score = clip(mu(s, c) + u_p + eps_k, 0, 10)
    mu(s, c) = anchor + scale * (b_c * (c - c_ref) + offset_z[s] + slope_z[s] * (c - c_ref))
    u_p ~ N(0, prompt_sd)    one draw per prompt and run key   (prompt_offset)
    eps_k ~ N(0, seed_sd)    one draw per image (seed)

with ``c = prompt_complexity(p)`` in [0, 1]. ``offset_z``/``slope_z`` are in
z-units (total SD of one Stable Diffusion image's quality across prompts and
seeds); ``anchor`` (score points) and ``scale`` (points per z) map them to the
0-10 scale.

**Damage** (``quality_damage.yaml``, fitted elsewhere; defaults if it is
missing). With ``e = ber * n_bits`` the expected number of bit errors in an
image, the share of the generation score a user still gives is::

    retention(e) = 1 / (1 + (e / e50) ** k)
    p_undecodable(e) = 1 - exp(-e * undecodable_per_error)
    expected received score = gen_score * (1 - p_undecodable(e)) * retention(e)

>>> qm = QualityModel.default()
>>> qm.n_strategies
7
>>> float(qm.retention(0.0, 8_000_000))
1.0
>>> bool(qm.mean_score(0.2, 5) > qm.mean_score(0.2, 0))
True
>>> a = qm.prompt_offset("A dog with a colorful collar", key=3)
>>> a == qm.prompt_offset("A dog with a colorful collar", key=3)
True
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml
from numpy.typing import ArrayLike
from scipy.special import log_ndtr

#: Strategies of Table II: 0 raw ... 6 (+ negative effects).
N_STRATEGIES = 7
#: The aspects of Table II a strategy may add, in the table's order (the corpus's keys).
ASPECTS: tuple[str, ...] = ("object", "environment", "mood", "lighting", "quality", "negative")
#: Which aspects each strategy adds (indices into :data:`ASPECTS`), per reading of Table II:
#: ``printed`` is the table as the paper prints it (strategy 1 the object description, strategies
#: 2-6 the object description plus one aspect each); ``cumulative`` stacks them (strategy ``s`` adds
#: aspects 1..s, so strategy 6 is the richest refinement by construction).
STRATEGY_TABLES: dict[str, tuple[tuple[int, ...], ...]] = {
    "printed": ((), (0,), (0, 1), (0, 2), (0, 3), (0, 4), (0, 5)),
    "cumulative": tuple(tuple(range(s)) for s in range(N_STRATEGIES)),
}
#: The assessor's score range.
SCORE_MIN, SCORE_MAX = 0.0, 10.0

# ---------------------------------------------------------------------------
# Prompt complexity
# ---------------------------------------------------------------------------

#: Function words that do not count as content (articles, prepositions, conjunctions,
#: pronouns, auxiliaries, quantifier-like fillers). Everything else is a content word.
STOPWORDS: frozenset[str] = frozenset(
    """
    a an the this that these those some any each every
    of in on at to for with without from by as into onto over under above below between among
    through across against along around behind beside besides near next off out up down upon
    within about after before during while until than then there here
    and or but nor so yet if because though although
    is are was were be been being am has have had do does did will would can could shall should
    may might must it its it's he she they them their theirs his her hers him we us our ours
    i me my mine you your yours who whom whose which what where when how
    very just also too not no
    """.split()
)

#: Content words of a prompt with no complexity (the template's bare "A [scene] with [object]").
COMPLEXITY_MIN_WORDS = 2
#: Content words at which complexity saturates at 1.
COMPLEXITY_MAX_WORDS = 12

_TOKEN = re.compile(r"[a-z0-9]+(?:['\u2019][a-z]+)?")


def content_words(prompt: str) -> list[str]:
    """Lower-cased word tokens of ``prompt`` that are not in :data:`STOPWORDS`.

    >>> content_words("A city with blue car")
    ['city', 'blue', 'car']
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    return [t for t in _TOKEN.findall(prompt.lower()) if t not in STOPWORDS]


def prompt_complexity(prompt: str) -> float:
    """Prompt complexity in [0, 1]: the normalised number of content words.

    ``c = clip((n - 2) / (12 - 2), 0, 1)`` with ``n`` the number of content
    words (word tokens, lower-cased, minus the function words in
    :data:`STOPWORDS`; punctuation and clause structure are not counted
    separately, since every extra clause or attribute brings content words).
    A bare "A [scene] with [object]" prompt (2 content words) is 0, each
    attribute, clause or extra object adds 0.1, and 12 or more content words
    give 1. The same function is applied to the rating datasets' prompts when
    the model is derived, so its complexity slopes are per unit of this ``c``.

    >>> prompt_complexity("A beach with a boat")
    0.0
    >>> prompt_complexity("A dog with a colorful collar")
    0.1
    >>> round(prompt_complexity("A savanna at sunset, with a family of elephants"), 2)
    0.2
    >>> prompt_complexity("")
    0.0
    """
    n = len(content_words(prompt))
    c = (n - COMPLEXITY_MIN_WORDS) / (COMPLEXITY_MAX_WORDS - COMPLEXITY_MIN_WORDS)
    return float(min(1.0, max(0.0, c)))


@lru_cache(maxsize=65536)
def prompt_complexity_cached(prompt: str) -> float:
    """:func:`prompt_complexity`, remembered for the last 65,536 prompts (the world asks it of every user)."""
    return prompt_complexity(prompt)


@lru_cache(maxsize=65536)
def _prompt_normal(prompt: str, key: int, part: int = 0) -> float:
    """The standard normal behind a prompt's random effect, fixed by its text, ``key`` and ``part`` (0: the
    prompt's own effect; ``1 + a``: its effect on aspect ``a``)."""
    text = " ".join(prompt.lower().split())
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    seq = np.random.SeedSequence(entropy=words, spawn_key=(key,) if part == 0 else (key, part))
    return float(np.random.Generator(np.random.PCG64(seq)).standard_normal())


def _strategy_sums(aspect_values: np.ndarray, table: str) -> np.ndarray:
    """Per strategy, the sum of its aspects' values under Table II's ``table`` reading (``STRATEGY_TABLES``)."""
    return np.array([float(np.asarray(aspect_values)[list(r)].sum()) for r in STRATEGY_TABLES[table]])


@lru_cache(maxsize=65536)
def _word_normal(word: str, seed: int, aspect: int) -> float:
    """A content word's fixed standard-normal effect on one aspect (SHA-256 of the word, the model's seed)."""
    digest = hashlib.sha256(word.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    seq = np.random.SeedSequence(entropy=words, spawn_key=(int(seed), int(aspect)))
    return float(np.random.Generator(np.random.PCG64(seq)).standard_normal())


@lru_cache(maxsize=4096)
def _category_normal(category: str, seed: int, aspect: int) -> float:
    """A prompt category's fixed standard-normal effect on one aspect (from the model's seed)."""
    return _word_normal("category:" + category, seed, aspect)


@lru_cache(maxsize=65536)
def _content_normal(prompt: str, seed: int, aspect: int) -> float:
    """The standard normal a prompt's content words give one aspect: the sum of their effects over sqrt(count)
    (distinct content words; 0 for a prompt without any)."""
    unique = sorted(set(content_words(prompt)))
    if not unique:
        return 0.0
    return sum(_word_normal(w, seed, aspect) for w in unique) / math.sqrt(len(unique))


# ---------------------------------------------------------------------------
# Numerics shared with scripts/derive_quality_stats.py
# ---------------------------------------------------------------------------

_GL_T, _GL_W = np.polynomial.legendre.leggauss(160)
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(24)
_GH_W = _GH_W / _GH_W.sum()


def expected_max_normal(
    mean: ArrayLike,
    sd: ArrayLike,
    n: ArrayLike,
    lo: float = -math.inf,
    hi: float = math.inf,
) -> np.ndarray:
    """``E[clip(max(Y_1..Y_n), lo, hi)]`` for iid ``Y_j ~ N(mean, sd)``, vectorised.

    Uses ``E[X] = A + integral_A^B P(X > x) dx`` for ``X`` in ``[lo, hi]``, with
    ``P(max Y > x) = 1 - Phi((x - mean) / sd) ** n`` and ``[A, B]`` the part of
    ``[lo, hi]`` within ``mean - 10 sd`` .. ``mean + (10 + sqrt(2 ln n)) sd``
    (outside it the integrand is 1 or 0 to double precision), by 160-point
    Gauss-Legendre quadrature. Clipping a maximum equals the maximum of the
    clipped draws, so this is also the expected best of ``n`` clipped scores.

    >>> [round(float(v), 4) for v in expected_max_normal(0.0, 1.0, [1, 2, 3, 4])]
    [0.0, 0.5642, 0.8463, 1.0294]
    """
    m, s, k = np.broadcast_arrays(
        np.asarray(mean, dtype=float), np.asarray(sd, dtype=float), np.asarray(n, dtype=float)
    )
    if np.any(~(s > 0)) or not np.all(np.isfinite(s)):
        raise ValueError("sd must be finite and > 0")
    if np.any(k < 1) or np.any(k != np.round(k)):
        raise ValueError("n must be an integer >= 1")
    upper = 10.0 + np.sqrt(2.0 * np.log(k))
    a = np.clip(m - 10.0 * s, lo, hi)
    b = np.clip(m + upper * s, lo, hi)
    half = 0.5 * (b - a)
    x = (a + half)[..., None] + half[..., None] * _GL_T
    z = (x - m[..., None]) / s[..., None]
    surv = -np.expm1(k[..., None] * log_ndtr(z))
    return a + half * (surv @ _GL_W)


def prob_max_at_least(threshold: ArrayLike, mean: ArrayLike, sd: ArrayLike, n: ArrayLike = 1) -> np.ndarray:
    """P(clip(max Y, 0, 10) >= threshold) for Y ~ N(mean, sd), n draws; broadcasts."""
    threshold, mean, sd, n = (np.asarray(x, dtype=float) for x in (threshold, mean, sd, n))
    z = (threshold - mean) / sd
    p = -np.expm1(n * log_ndtr(z))
    p = np.where(threshold <= SCORE_MIN, 1.0, p)
    return np.where(threshold > SCORE_MAX, 0.0, p)


# ---------------------------------------------------------------------------
# Damage
# ---------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _parsed_yaml(path: str, mtime_ns: int, size: int) -> Any:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _read_mapping(path: Path, what: str, expected: str) -> Mapping[str, Any]:
    """The YAML mapping in ``path``, parsed once per version of the file (worlds and environments rebuild
    models often); one-line errors name the file (``what`` it is, the ``expected`` content).

    The parsed data is shared between callers: read it, never change it.
    """
    try:
        stat = path.stat()
        raw = _parsed_yaml(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} file not found") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: expected {expected}")
    return raw


@dataclass(frozen=True)
class DamageParams:
    """Parameters of the score retained after bit errors (see the module docstring).

    ``e50``: expected bit errors per image at which half the score is retained
    (errors); ``k``: steepness (dimensionless); ``undecodable_per_error``: rate of
    the probability that an image no longer decodes, per expected bit error.
    Defaults (``e50=1``, ``k=1.5``, no undecodable images) stand in until
    ``sim/data/quality_damage.yaml`` is fitted.
    """

    e50: float = 1.0
    k: float = 1.5
    undecodable_per_error: float = 0.0
    #: Where the numbers came from (a file path or "defaults").
    source: str = field(default="defaults", compare=False)

    def __post_init__(self) -> None:
        for name in ("e50", "k"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"damage parameter {name} must be a finite number > 0, got {v!r}")
        u = self.undecodable_per_error
        if not (isinstance(u, (int, float)) and math.isfinite(u) and u >= 0):
            raise ValueError(f"damage parameter undecodable_per_error must be a finite number >= 0, got {u!r}")

    @classmethod
    def from_yaml(cls, path: str | Path, image_format: str | None = None) -> "DamageParams":
        """Read ``e50``, ``k`` and optional ``undecodable_per_error`` from ``path``.

        The file holds them either at the top level, or per image format under
        ``formats: {jpeg: {...}, png: {...}, raw: {...}}`` (top-level values then
        fill what an entry leaves out). ``image_format`` picks the entry; without
        it the top-level values are used, or the entry named by the file's
        ``default_format`` (else ``jpeg``). Other keys (sources, fit statistics)
        are ignored.
        """
        path = Path(path)
        raw = _read_mapping(path, "damage model", "a mapping with e50, k (and undecodable_per_error)")
        keys = ("e50", "k", "undecodable_per_error")
        values: dict[str, Any] = {key: raw[key] for key in keys if key in raw}
        formats = raw.get("formats")
        if formats is not None:
            if not isinstance(formats, Mapping):
                raise ValueError(f"{path}: 'formats' must map image formats to parameters")
            fmt = image_format
            if fmt is None and not {"e50", "k"} <= values.keys():
                fmt = str(raw.get("default_format", "jpeg"))
            if fmt is not None:
                if fmt not in formats:
                    if not {"e50", "k"} <= values.keys():
                        raise ValueError(
                            f"{path}: no damage parameters for image format {fmt!r} "
                            f"(has: {', '.join(map(str, formats))})"
                        )
                else:
                    entry = formats[fmt]
                    if not isinstance(entry, Mapping):
                        raise ValueError(f"{path}: formats.{fmt} must be a mapping")
                    values.update({key: entry[key] for key in keys if key in entry})
        missing = [key for key in ("e50", "k") if key not in values]
        if missing:
            raise ValueError(f"{path}: missing damage parameter(s) {', '.join(missing)}")
        try:
            values = {key: float(v) for key, v in values.items()}
        except (TypeError, ValueError):
            raise ValueError(f"{path}: damage parameters must be numbers, got {values}") from None
        try:
            return cls(**values, source=str(path))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def retention_of_errors(self, errors: ArrayLike) -> np.ndarray:
        """``1 / (1 + (e / e50) ** k)`` for expected bit errors ``e >= 0``."""
        e = np.asarray(errors, dtype=float)
        return 1.0 / (1.0 + (e / self.e50) ** self.k)

    def p_undecodable_of_errors(self, errors: ArrayLike) -> np.ndarray:
        """``1 - exp(-e * undecodable_per_error)``."""
        e = np.asarray(errors, dtype=float)
        return -np.expm1(-e * self.undecodable_per_error)


def _expected_errors(ber: ArrayLike, n_bits: ArrayLike) -> np.ndarray:
    b = np.asarray(ber, dtype=float)
    if type(n_bits) in (int, float) and 0 <= n_bits < math.inf:  # one image size: no array to check
        n = n_bits
    else:
        n = np.asarray(n_bits, dtype=float)
        if not (np.isfinite(n) & (n >= 0)).all():
            raise ValueError("n_bits must be finite and >= 0")
    if b.size and not (np.minimum.reduce(b, axis=None) >= 0 and np.maximum.reduce(b, axis=None) <= 1):  # NaN fails
        raise ValueError("ber must be a probability in [0, 1]")
    return b * n


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------

_DATA = "data"
GENERATION_FILE = "quality_generation.yaml"
#: Generation files shipped per quality profile (``quality.profile``): ``classic``, Table II read cumulatively
#: without per-prompt strategy effects; ``ratings``, Table II as printed with per-prompt strategy effects
#: (docs/quality_model.md); ``paper``, the ratings model calibrated to the D3PG paper's prompt-engineering results.
PROFILES = {"classic": GENERATION_FILE, "ratings": "quality_generation_ratings.yaml",
            "paper": "quality_generation_paper.yaml"}
DAMAGE_FILE = "quality_damage.yaml"


def _package_file(name: str) -> Path:
    return Path(str(resources.files("sim").joinpath(_DATA, name)))


def _strategy_array(strategy: ArrayLike) -> np.ndarray:
    s = np.asarray(strategy)
    if s.dtype == bool or not np.issubdtype(s.dtype, np.number):
        raise ValueError(f"strategy must be an integer in 0..{N_STRATEGIES - 1} (Table II), got {strategy!r}")
    bad = (s != np.round(s)) | (s < 0) | (s > N_STRATEGIES - 1) if s.size else np.zeros(0, bool)
    if np.any(bad):
        first = s[bad].flat[0] if s.ndim else s.item()
        raise ValueError(
            f"strategy must be an integer in 0..{N_STRATEGIES - 1} (Table II: 0 raw, 1 object, "
            f"2 +environment, 3 +mood, 4 +lighting, 5 +quality booster, 6 +negative effects), got {first!r}"
        )
    return s.astype(int)


def _aspect_array(values: ArrayLike, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).copy()
    if array.shape != (len(ASPECTS),) or not np.all(np.isfinite(array)):
        raise ValueError(f"{what} needs a finite value for each of the {len(ASPECTS)} aspects ({', '.join(ASPECTS)})")
    array.flags.writeable = False
    return array


def _n_array(n: ArrayLike) -> np.ndarray:
    k = np.asarray(n)
    if k.dtype == bool or not np.issubdtype(k.dtype, np.number) or np.any(k != np.round(k)) or np.any(k < 1):
        raise ValueError(f"n (images) must be an integer >= 1, got {n!r}")
    return k.astype(float)


def _complexity_array(complexity: ArrayLike) -> np.ndarray:
    c = np.asarray(complexity, dtype=float)
    if not np.all(np.isfinite(c)) or np.any((c < 0) | (c > 1)):
        raise ValueError(f"complexity must be in [0, 1] (see prompt_complexity), got {complexity!r}")
    return c


def _get(raw: Mapping[str, Any], dotted: str, path: Path) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ValueError(f"{path}: missing key {dotted!r}")
        node = node[part]
    return node


def _number(raw: Mapping[str, Any], dotted: str, path: Path, positive: bool = False) -> float:
    v = _get(raw, dotted, path)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{path}: {dotted} must be a finite number{' > 0' if positive else ''}, got {v!r}")
    return float(v)


class QualityModel:
    """Generation scores per prompt complexity and strategy, and their retention after bit errors.

    Build it with :meth:`default` (the files shipped in ``sim/data``) or
    :meth:`from_yaml`. All score quantities are on the assessor's 0-10 scale.

    Attributes: ``anchor`` (mean raw-prompt score at ``c_ref``), ``scale``
    (points per z-unit), ``c_ref``, ``seed_sd`` and ``prompt_sd`` (points),
    ``complexity_slope_z`` (raw-prompt slope, z per unit complexity),
    ``offset_z`` / ``slope_z`` (per strategy, shape (7,)), ``damage``
    (:class:`DamageParams`), ``generation_path`` / ``damage_path`` (files read;
    ``damage_path`` is None when the defaults are used).
    """

    n_strategies: int = N_STRATEGIES

    def __init__(
        self,
        *,
        anchor: float,
        scale: float,
        c_ref: float,
        seed_sd_z: float,
        prompt_sd_z: float,
        complexity_slope_z: float,
        offset_z: ArrayLike,
        slope_z: ArrayLike,
        strategy_names: tuple[str, ...] | None = None,
        damage: DamageParams | None = None,
        image_format: str | None = None,
        generation_path: Path | None = None,
        damage_path: Path | None = None,
        aspect_offset_z: ArrayLike | None = None,
        aspect_slope_z: ArrayLike | None = None,
        aspect_prompt_sd_z: ArrayLike | None = None,
        aspect_content_share: ArrayLike | None = None,
        aspect_category_share: ArrayLike | None = None,
        content_seed: int = 0,
        strategy_table: str = "cumulative",
        listed_table: str | None = None,
        judge_sd_z: float = 0.0,
    ):
        self.anchor = float(anchor)
        self.scale = float(scale)
        self.c_ref = float(c_ref)
        self._prompt_means: dict[tuple[str, int, int], float] = {}
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be > 0, got {scale!r}")
        if not 0.0 <= self.c_ref <= 1.0:
            raise ValueError(f"c_ref must be in [0, 1], got {c_ref!r}")
        if not (seed_sd_z > 0 and math.isfinite(seed_sd_z)):
            raise ValueError(f"seed_sd_z must be > 0, got {seed_sd_z!r}")
        if not (prompt_sd_z >= 0 and math.isfinite(prompt_sd_z)):
            raise ValueError(f"prompt_sd_z must be >= 0, got {prompt_sd_z!r}")
        self.seed_sd_z = float(seed_sd_z)
        if not (judge_sd_z >= 0 and math.isfinite(judge_sd_z)):
            raise ValueError(f"judge_sd_z must be >= 0, got {judge_sd_z!r}")
        #: SD (z) of the assessor's own noise, per image: a judge that scores the same image differently each
        #: time (0: the judge is the rating panel, whose small noise is already in ``seed_sd_z``).
        self.judge_sd_z = float(judge_sd_z)
        self.prompt_sd_z = float(prompt_sd_z)
        self.complexity_slope_z = float(complexity_slope_z)
        if strategy_table not in STRATEGY_TABLES:
            raise ValueError(f"strategy_table must be one of {', '.join(STRATEGY_TABLES)}, got {strategy_table!r}")
        # the reading ``offset_z``/``slope_z`` are given in (default: the one asked for)
        listed_table = strategy_table if listed_table is None else listed_table
        self.strategy_table = strategy_table
        #: Per aspect (:data:`ASPECTS`): its gain at ``c_ref`` and complexity slope (z), when the model has them.
        self.aspect_offset_z = None if aspect_offset_z is None else _aspect_array(aspect_offset_z, "aspect_offset_z")
        self.aspect_slope_z = None if aspect_slope_z is None else _aspect_array(aspect_slope_z, "aspect_slope_z")
        #: Per aspect: SD (z) of its prompt-specific effect (one draw per prompt, aspect and key; 0: none).
        self.aspect_prompt_sd_z = (np.zeros(len(ASPECTS)) if aspect_prompt_sd_z is None
                                   else _aspect_array(aspect_prompt_sd_z, "aspect_prompt_sd_z"))
        if np.any(self.aspect_prompt_sd_z < 0):
            raise ValueError("aspect_prompt_sd_z must be >= 0")
        #: Per aspect: the share of its prompt-specific variance that comes from the prompt's words (the rest is
        #: the prompt's own): prompts that share words share that part, so it can be learned from the text.
        self.aspect_content_share = (np.zeros(len(ASPECTS)) if aspect_content_share is None
                                     else _aspect_array(aspect_content_share, "aspect_content_share"))
        if np.any((self.aspect_content_share < 0) | (self.aspect_content_share > 1)):
            raise ValueError("aspect_content_share must lie in [0, 1]")
        #: Per aspect: the share of the content part that follows the prompt's category (what it is about), the rest
        #: its words. The category comes from :attr:`categorise` (``None``: every prompt is ``other``).
        self.aspect_category_share = (np.zeros(len(ASPECTS)) if aspect_category_share is None
                                      else _aspect_array(aspect_category_share, "aspect_category_share"))
        if np.any((self.aspect_category_share < 0) | (self.aspect_category_share > 1)):
            raise ValueError("aspect_category_share must lie in [0, 1]")
        #: ``prompt -> category`` (e.g. :func:`sim.prompting.prompts.prompt_category`, set by the world's backends);
        #: the model itself knows no prompt set.
        self.categorise = None
        if isinstance(content_seed, bool) or int(content_seed) < 0:
            raise ValueError(f"content_seed must be a non-negative integer, got {content_seed!r}")
        #: Seed of the words' effects (part of the model, the same in every run: what a policy can learn).
        self.content_seed = int(content_seed)
        if strategy_table != listed_table:  # the strategies' means are their aspects' sums under this reading
            if self.aspect_offset_z is None or self.aspect_slope_z is None:
                raise ValueError(f"strategy_table {strategy_table!r} needs the aspects' gains and slopes "
                                 "(the quality file's 'aspects' section)")
            offset_z = _strategy_sums(self.aspect_offset_z, strategy_table)
            slope_z = _strategy_sums(self.aspect_slope_z, strategy_table)
        self.offset_z = np.asarray(offset_z, dtype=float).copy()
        self.slope_z = np.asarray(slope_z, dtype=float).copy()
        if self.offset_z.shape != (N_STRATEGIES,) or self.slope_z.shape != (N_STRATEGIES,):
            raise ValueError(f"need offset_z and slope_z for all {N_STRATEGIES} strategies")
        if not (np.all(np.isfinite(self.offset_z)) and np.all(np.isfinite(self.slope_z))):
            raise ValueError("strategy offsets and slopes must be finite")
        self.offset_z.flags.writeable = False
        self.slope_z.flags.writeable = False
        self.strategy_names = tuple(strategy_names) if strategy_names else tuple(f"s{i}" for i in range(N_STRATEGIES))
        self.damage = damage if damage is not None else DamageParams()
        self.image_format = image_format
        self.generation_path = generation_path
        self.damage_path = damage_path

    # -- construction ------------------------------------------------------

    @classmethod
    def from_yaml(
        cls,
        generation_path: str | Path,
        damage_path: str | Path | None = None,
        *,
        image_format: str | None = None,
        strategy_table: str | None = None,
        judge_sd_z: float | None = None,
    ) -> "QualityModel":
        """Load the generation model from ``generation_path`` and the damage model from ``damage_path``.

        ``damage_path=None`` uses the packaged ``sim/data/quality_damage.yaml``
        when it exists, else :class:`DamageParams` defaults. ``image_format``
        (``jpeg``/``png``/``raw``) picks per-format damage parameters. ``strategy_table``
        (:data:`STRATEGY_TABLES`; ``None``: the file's own, ``strategy_table:``, cumulative when it
        names none): the file's reading takes its ``strategies``; another reading sums the file's
        ``aspects`` (``gain_z_at_c_ref``, ``slope_z``) per its rows. An aspect's optional
        ``prompt_sd_z`` and ``content_share`` set its prompt-specific effect (:meth:`aspect_effect_z`).
        ``judge_sd_z`` (``None``: the file's, 0 when it has none) is the assessor's own noise.
        """
        path = Path(generation_path)
        raw = _read_mapping(path, "quality generation", "a mapping (see docs/quality_model.md)")
        own_table = str(raw.get("strategy_table", "cumulative"))
        if own_table not in STRATEGY_TABLES:
            raise ValueError(f"{path}: strategy_table must be one of {', '.join(STRATEGY_TABLES)}, got {own_table!r}")
        strategy_table = own_table if strategy_table is None else strategy_table
        strategies = _get(raw, "strategies", path)
        if not isinstance(strategies, list) or len(strategies) != N_STRATEGIES:
            raise ValueError(f"{path}: 'strategies' must list {N_STRATEGIES} entries (ids 0..6)")
        offsets, slopes, names = [], [], []
        for i, entry in enumerate(strategies):
            if not isinstance(entry, Mapping) or entry.get("id") != i:
                raise ValueError(f"{path}: strategies[{i}] must be a mapping with id: {i}")
            offsets.append(_number(entry, "offset_z", path))
            slopes.append(_number(entry, "slope_z", path))
            names.append(str(entry.get("name", f"s{i}")))
        aspect_offsets = aspect_slopes = aspect_sds = None
        aspects = raw.get("aspects")
        if aspects is not None:
            if not isinstance(aspects, Mapping) or set(aspects) != set(ASPECTS):
                raise ValueError(f"{path}: 'aspects' must be a mapping with the keys {', '.join(ASPECTS)}")
            aspect_offsets = [_number(aspects[a], "gain_z_at_c_ref", path) for a in ASPECTS]
            aspect_slopes = [_number(aspects[a], "slope_z", path) for a in ASPECTS]
            aspect_sds = [_number(aspects[a], "prompt_sd_z", path) if "prompt_sd_z" in aspects[a] else 0.0
                          for a in ASPECTS]
            shares = [_number(aspects[a], "content_share", path) if "content_share" in aspects[a] else 0.0
                      for a in ASPECTS]
            category_shares = [_number(aspects[a], "category_share", path) if "category_share" in aspects[a]
                               else 0.0 for a in ASPECTS]
        if damage_path is None:
            packaged = _package_file(DAMAGE_FILE)
            damage_file = packaged if packaged.is_file() else None
        else:
            damage_file = Path(damage_path)
        damage = DamageParams.from_yaml(damage_file, image_format) if damage_file is not None else DamageParams()
        return cls(
            anchor=_number(raw, "mapping.anchor", path),
            scale=_number(raw, "mapping.scale", path, positive=True),
            c_ref=_number(raw, "mapping.c_ref", path),
            seed_sd_z=_number(raw, "seed_sd_z", path, positive=True),
            prompt_sd_z=_number(raw, "prompt_sd_z", path),
            complexity_slope_z=_number(raw, "complexity_slope_z", path),
            offset_z=offsets,
            slope_z=slopes,
            strategy_names=tuple(names),
            damage=damage,
            image_format=image_format,
            generation_path=path,
            damage_path=damage_file,
            aspect_offset_z=aspect_offsets,
            aspect_slope_z=aspect_slopes,
            aspect_prompt_sd_z=aspect_sds,
            aspect_content_share=shares if aspects is not None else None,
            aspect_category_share=category_shares if aspects is not None else None,
            content_seed=int(_number(raw, "content_seed", path)) if "content_seed" in raw else 0,
            strategy_table=strategy_table,
            listed_table=own_table,
            judge_sd_z=(_number(raw, "judge_sd_z", path) if "judge_sd_z" in raw else 0.0) if judge_sd_z is None
            else float(judge_sd_z),
        )

    @classmethod
    def default(cls, *, image_format: str | None = None, strategy_table: str | None = None,
                profile: str = "classic", judge_sd_z: float | None = None) -> "QualityModel":
        """A model shipped in ``sim/data``: ``profile`` (:data:`PROFILES`) picks the generation file;
        ``quality_damage.yaml`` if present."""
        if profile not in PROFILES:
            raise ValueError(f"quality profile must be one of {', '.join(PROFILES)}, got {profile!r}")
        return cls.from_yaml(_package_file(PROFILES[profile]), None, image_format=image_format,
                             strategy_table=strategy_table, judge_sd_z=judge_sd_z)

    # -- generation --------------------------------------------------------

    @property
    def seed_sd(self) -> float:
        """SD of one image's score around its prompt's mean, seed to seed (points)."""
        return self.scale * self.seed_sd_z

    @property
    def judge_sd(self) -> float:
        """SD of the assessor's own per-image noise (points)."""
        return self.scale * self.judge_sd_z

    @property
    def image_sd(self) -> float:
        """SD of one judged image's score around its prompt's mean: seed and judge noise (points); what every
        score draw and probability of the model uses."""
        return math.hypot(self.seed_sd, self.judge_sd)

    @property
    def prompt_sd(self) -> float:
        """SD of the per-prompt random effect (points)."""
        return self.scale * self.prompt_sd_z

    def mean_z(self, complexity: ArrayLike, strategy: ArrayLike) -> np.ndarray:
        """``mu`` in z-units relative to the raw prompt at ``c_ref`` (vectorised)."""
        c = _complexity_array(complexity)
        s = _strategy_array(strategy)
        d = c - self.c_ref
        return self.complexity_slope_z * d + self.offset_z[s] + self.slope_z[s] * d

    def mean_score(self, complexity: ArrayLike, strategy: ArrayLike) -> np.ndarray:
        """Mean score ``mu(s, c)`` of a typical prompt (zero prompt effect), before clipping; broadcasts.

        >>> qm = QualityModel.default()
        >>> qm.mean_score([0.0, 1.0], 0).shape
        (2,)
        """
        return self.anchor + self.scale * self.mean_z(complexity, strategy)

    def prompt_offset(self, prompt: str, key: int = 0) -> float:
        """The prompt's random effect ``u_p ~ N(0, prompt_sd)`` (points), fixed by ``(prompt, key)``.

        The prompt text (lower-cased, whitespace collapsed) is hashed with
        SHA-256; its first 128 bits and ``key`` (e.g. a run's ``prompt_effect``
        stream seed) seed a :class:`numpy.random.SeedSequence`. Same prompt and
        key, same offset, in every process; another key gives an independent draw.
        """
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
            raise ValueError(f"key must be a non-negative integer, got {key!r}")
        return float(self.prompt_sd * _prompt_normal(prompt, int(key)))

    def aspect_effect_z(self, prompt: str, aspect: int, key: int = 0) -> float:
        """Aspect ``aspect``'s prompt-specific effect on ``prompt`` (z), ``N(0, aspect_prompt_sd_z[a])``: a share
        ``rho = aspect_content_share[a]`` of its variance from the prompt's content words (each word carries a fixed
        standard-normal effect per aspect, drawn from ``content_seed``; the prompt takes their sum over
        ``sqrt(words)``), the rest the prompt's own draw, fixed by its text, the aspect and ``key``."""
        sd = float(self.aspect_prompt_sd_z[aspect])
        if sd == 0:
            return 0.0
        rho = float(self.aspect_content_share[aspect])
        own = _prompt_normal(prompt, int(key), 1 + aspect) if rho < 1 else 0.0
        content = self._content_z(prompt, aspect) if rho > 0 else 0.0
        return sd * (math.sqrt(rho) * content + math.sqrt(1.0 - rho) * own)

    def category_of(self, prompt: str) -> str:
        """The prompt's category by :attr:`categorise` (``other`` without one)."""
        return "other" if self.categorise is None else str(self.categorise(prompt))

    def _content_z(self, prompt: str, aspect: int) -> float:
        """The standard normal the prompt's content gives ``aspect``: its category's fixed effect (share
        ``kappa = aspect_category_share``) and its words' (the rest)."""
        kappa = float(self.aspect_category_share[aspect])
        words = _content_normal(prompt, self.content_seed, aspect) if kappa < 1 else 0.0
        category = _category_normal(self.category_of(prompt), self.content_seed, aspect) if kappa > 0 else 0.0
        return math.sqrt(kappa) * category + math.sqrt(1.0 - kappa) * words

    def text_effect_z(self, prompt: str, strategy: int) -> float:
        """The part of ``strategy``'s prompt-specific effect on ``prompt`` that its words fix (z): the same in
        every run, so what a policy reading the text can know (:meth:`aspect_effect_z`)."""
        rows = STRATEGY_TABLES[self.strategy_table][int(_strategy_array(strategy))]
        return float(sum(self.aspect_prompt_sd_z[a] * math.sqrt(self.aspect_content_share[a]) * self._content_z(prompt, a)
                         for a in rows if self.aspect_prompt_sd_z[a] > 0 and self.aspect_content_share[a] > 0))

    def own_effect_sd(self, strategy: int) -> float:
        """SD (points) of the part of ``strategy``'s prompt-specific effect that the words do not fix."""
        rows = STRATEGY_TABLES[self.strategy_table][int(_strategy_array(strategy))]
        var = sum(self.aspect_prompt_sd_z[a] ** 2 * (1.0 - self.aspect_content_share[a]) for a in rows)
        return self.scale * math.sqrt(var)

    def text_known_success(self, prompt: str, strategy: int, threshold: ArrayLike, n: int = 1,
                           prompt_offset: float | None = None) -> float | np.ndarray:
        """P(best of ``n`` scores >= ``threshold``) for ``prompt`` under ``strategy`` as far as its text tells:
        the complexity mean and :meth:`text_effect_z` known; unknown, and integrated by Gauss-Hermite quadrature
        (one draw shared by the ``n`` images), the rest of the strategy's prompt-specific effect and, unless
        ``prompt_offset`` gives it, the prompt's own offset ``u_p``. An array of thresholds gives one chance each."""
        mu = (float(self.mean_score(prompt_complexity_cached(prompt), strategy)) + (prompt_offset or 0.0)
              + self.scale * self.text_effect_z(prompt, strategy))
        sd = math.hypot(self.own_effect_sd(strategy), self.prompt_sd if prompt_offset is None else 0.0)
        thr = np.asarray(threshold, dtype=float)
        if sd == 0:
            p = prob_max_at_least(thr, mu, self.image_sd, _n_array(n))
        else:  # thresholds x quadrature nodes
            p = prob_max_at_least(thr[..., None], mu + sd * _GH_X, self.image_sd, _n_array(n)) @ _GH_W
        return float(p) if p.ndim == 0 else p

    def strategy_effect_z(self, prompt: str, strategy: int, key: int = 0) -> float:
        """The prompt-specific part of ``strategy``'s effect on ``prompt`` (z): the sum of
        :meth:`aspect_effect_z` over the aspects the strategy adds (0 when the model has no such effects)."""
        rows = STRATEGY_TABLES[self.strategy_table][int(_strategy_array(strategy))]
        return float(sum(self.aspect_effect_z(prompt, a, key) for a in rows))

    def sample_scores(
        self, prompt: str, strategy: int, rng: np.random.Generator, n: int, key: int = 0
    ) -> np.ndarray:
        """``n`` scores of images of ``prompt`` under ``strategy`` (clipped to [0, 10]).

        The prompt's complexity and offset are fixed by the text (and ``key``);
        the seed-to-seed draws come from ``rng``.
        """
        k = n if type(n) is int and n >= 1 else int(_n_array(n))  # noqa: E721 (the world's plain ints skip the checks)
        return self.scores_from_normals(self.prompt_mean_score(prompt, strategy, key), rng.standard_normal(k))

    def scores_from_normals(self, mean: ArrayLike, normals: ArrayLike) -> np.ndarray:
        """Scores of images whose seed-to-seed standard normal draws are ``normals``, around ``mean`` (the
        :meth:`prompt_mean_score` of their prompt and strategy; broadcasts): ``mean + image_sd * z``, clipped
        to [0, 10]. :meth:`sample_scores` draws the normals; the statistical world passes a round's own."""
        draws = np.multiply(normals, self.image_sd)
        draws += mean
        return np.minimum(np.maximum(draws, SCORE_MIN, out=draws), SCORE_MAX, out=draws)

    def prompt_mean_score(self, prompt: str, strategy: int, key: int = 0) -> float:
        """Mean score of images of ``prompt`` under ``strategy``: the complexity mean plus the prompt's offset.

        Fixed by the text, strategy and ``key`` (remembered per model: the world asks for it every round).
        """
        cache_key = (prompt, strategy, key)
        mu = self._prompt_means.get(cache_key)
        if mu is None:
            s = int(_strategy_array(strategy))
            mu = float(self.mean_score(prompt_complexity_cached(prompt), s)) + self.prompt_offset(prompt, key)
            if s and self.aspect_prompt_sd_z.any():
                mu += self.scale * self.strategy_effect_z(prompt, s, key)
            if len(self._prompt_means) < 65536:
                self._prompt_means[cache_key] = mu
        return mu

    def expected_best_of_n(
        self, complexity: ArrayLike, strategy: ArrayLike, n: ArrayLike, offset: ArrayLike = 0.0
    ) -> np.ndarray:
        """Expected best score of ``n`` images (clipped normal), exact up to quadrature; broadcasts.

        ``offset`` is the prompt effect (points). ``n=1`` is the mean of the
        clipped normal.
        """
        mu = self.mean_score(complexity, strategy) + np.asarray(offset, dtype=float)
        return expected_max_normal(mu, self.image_sd, _n_array(n), SCORE_MIN, SCORE_MAX)

    def prob_best_of_n_at_least(
        self,
        threshold: ArrayLike,
        complexity: ArrayLike,
        strategy: ArrayLike,
        n: ArrayLike,
        offset: ArrayLike = 0.0,
    ) -> np.ndarray:
        """P(best of ``n`` clipped scores >= ``threshold``) = ``1 - Phi((thr - mu) / seed_sd) ** n``; broadcasts.

        Clip-aware: 1 for a threshold <= 0, 0 above 10 (a score of exactly 10
        has the probability mass of the normal above 10).
        """
        thr = np.asarray(threshold, dtype=float)
        if np.any(np.isnan(thr)):
            raise ValueError("threshold must not be NaN")
        mu = self.mean_score(complexity, strategy) + np.asarray(offset, dtype=float)
        return prob_max_at_least(thr, mu, self.image_sd, _n_array(n))

    # -- damage ------------------------------------------------------------

    def retention(self, ber: ArrayLike, n_bits: ArrayLike) -> np.ndarray:
        """Share of the score retained, ``1 / (1 + (ber * n_bits / e50) ** k)``; 1 at ber 0."""
        return self.damage.retention_of_errors(_expected_errors(ber, n_bits))

    def p_undecodable(self, ber: ArrayLike, n_bits: ArrayLike) -> np.ndarray:
        """Probability the image no longer decodes, ``1 - exp(-ber * n_bits * undecodable_per_error)``."""
        return self.damage.p_undecodable_of_errors(_expected_errors(ber, n_bits))

    def damage_terms(self, ber: ArrayLike, n_bits: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """``(p_undecodable(ber, n_bits), retention(ber, n_bits))`` at once (the expected bit errors computed once)."""
        e = _expected_errors(ber, n_bits)
        return self.damage.p_undecodable_of_errors(e), self.damage.retention_of_errors(e)

    def expected_received_score(self, gen_score: ArrayLike, ber: ArrayLike, n_bits: ArrayLike) -> np.ndarray:
        """``gen_score * (1 - p_undecodable) * retention`` (an undecodable image scores 0)."""
        e = _expected_errors(ber, n_bits)
        g = np.asarray(gen_score, dtype=float)
        return g * (1.0 - self.damage.p_undecodable_of_errors(e)) * self.damage.retention_of_errors(e)

    def with_aspects(self, offset_z: ArrayLike, slope_z: ArrayLike, prompt_sd_z: ArrayLike | None = None,
                     anchor: float | None = None) -> "QualityModel":
        """A copy of this model with other aspect gains at ``c_ref`` and complexity slopes (z, one per aspect of
        :data:`ASPECTS`), optionally other per-prompt SDs of the aspects' effects and another anchor; the
        strategies' means are the aspects' sums under this model's strategy table (a model whose strategies
        come from its aspects, as the ratings and paper profiles' do). Everything else is shared. For a
        parametric bootstrap over the strategy model's fitted parameters (:mod:`sim.model.quality_uncertainty`).

        >>> qm = QualityModel.default(profile="ratings")
        >>> same = qm.with_aspects(qm.aspect_offset_z, qm.aspect_slope_z)
        >>> bool(np.allclose(same.offset_z, qm.offset_z, atol=1e-3)), same is qm
        (True, False)
        """
        import copy

        out = copy.copy(self)
        out.aspect_offset_z = _aspect_array(offset_z, "offset_z")
        out.aspect_slope_z = _aspect_array(slope_z, "slope_z")
        if prompt_sd_z is not None:
            sds = _aspect_array(prompt_sd_z, "prompt_sd_z")
            if np.any(sds < 0):
                raise ValueError("prompt_sd_z must be >= 0")
            out.aspect_prompt_sd_z = sds
        if anchor is not None:
            out.anchor = float(anchor)
        offsets = _strategy_sums(out.aspect_offset_z, self.strategy_table)
        slopes = _strategy_sums(out.aspect_slope_z, self.strategy_table)
        offsets.flags.writeable = slopes.flags.writeable = False
        out.offset_z, out.slope_z = offsets, slopes
        out._prompt_means = {}
        return out

    def __repr__(self) -> str:
        return (
            f"QualityModel(anchor={self.anchor:.3g}, scale={self.scale:.3g}, seed_sd={self.seed_sd:.3g}, "
            f"prompt_sd={self.prompt_sd:.3g}, damage={self.damage})"
        )


__all__ = [
    "ASPECTS",
    "COMPLEXITY_MAX_WORDS",
    "COMPLEXITY_MIN_WORDS",
    "DamageParams",
    "N_STRATEGIES",
    "PROFILES",
    "QualityModel",
    "STOPWORDS",
    "STRATEGY_TABLES",
    "content_words",
    "expected_max_normal",
    "prob_max_at_least",
    "prompt_complexity",
]
