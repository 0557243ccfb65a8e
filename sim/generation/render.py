"""Procedural stand-in images and the codecs that put them on the air.

The surrogate generator has no diffusion model, but bit errors must still hit
real image bytes. :func:`render_image` draws a deterministic picture from
(prompt, seed) whose visual detail grows with the prompt's complexity (more
shapes, more colours, finer and stronger texture), so that the encoded size,
and with it the number of bits exposed to the channel, grows with complexity
the way real generations of rich prompts are busier than those of bare ones.

Codecs (:func:`encode_image` / :func:`decode_image`):

``jpeg``
    Baseline JPEG (Pillow/libjpeg) with a restart marker after every MCU row
    (Pillow's ``restart_marker_rows=1`` save option; older Pillows ignore it, and
    :func:`encode_image` then warns once, see :func:`jpeg_restart_markers_supported`), the error-resilience
    tool of real JPEG transmission: the entropy decoder resynchronises at the next
    marker, so a bit error damages the blocks up to it rather than the rest of the
    image. Corrupted headers (quantisation/Huffman tables, frame header) make the
    image undecodable. A stream that is cut short or whose entropy-coded data is
    garbled but still parses is *decodable with damage* (libjpeg fills what it
    cannot decode), which is what real decoders show the user.
``png``
    Lossless PNG (zlib). Decoded like a strict decoder (libpng's default): a chunk
    whose CRC no longer matches, or a deflate stream that fails, makes the image
    undecodable, so PNG is fragile under bit errors.
``raw``
    An 8-byte header (magic ``b"RGB8"``, height and width as big-endian uint16)
    followed by the RGB bytes. A bit error in the pixels damages one pixel; one in
    the header makes the image undecodable.

>>> img = render_image("A garden with a fountain", seed=1, size=64, complexity=0.3)
>>> img.shape, img.dtype.name
((64, 64, 3), 'uint8')
>>> bool((img == render_image("A garden with a fountain", seed=1, size=64, complexity=0.3)).all())
True
>>> data = encode_image(img, "raw")
>>> bool((decode_image(data, "raw", img.shape) == img).all())
True
>>> decode_image(b"garbage", "jpeg", img.shape) is None
True
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import warnings
import zlib
from functools import lru_cache
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile

#: Image formats a generator can send.
FORMATS: tuple[str, ...] = ("jpeg", "png", "raw")

#: Header of the ``raw`` format: magic, then height and width (big-endian uint16).
RAW_MAGIC = b"RGB8"
_RAW_HEADER = struct.Struct(">4sHH")
RAW_HEADER_BYTES = _RAW_HEADER.size

#: Restart interval of encoded JPEGs: one restart marker per MCU row.
JPEG_RESTART_MARKER_ROWS = 1

#: zlib compression level of encoded PNGs.
PNG_COMPRESS_LEVEL = 3

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- rendering ---------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _interp_weights(size: int, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Knot indices and weights that linearly interpolate ``grid`` knots onto ``size`` pixels."""
    pos = (np.arange(size, dtype=np.float64) + 0.5) * (grid - 1) / size
    lo = np.clip(np.floor(pos).astype(np.intp), 0, grid - 2)
    frac = (pos - lo).astype(np.float32)
    return lo, lo + 1, frac


def _interp(knots: np.ndarray, size: int) -> np.ndarray:
    """Linearly interpolate ``knots`` (grid x ...) along axis 0 onto ``size`` points (small arrays)."""
    lo, hi, f = _interp_weights(size, knots.shape[0])
    out = knots[lo]
    out += (knots[hi] - out) * f.reshape((size,) + (1,) * (knots.ndim - 1))
    return out


class _Workspace(threading.local):
    """Per-thread scratch planes for one image size, reused across renders.

    Fresh multi-hundred-kilobyte arrays are served by mmap and page-faulted in on every
    call, which costs more than the arithmetic; reusing planes keeps a render at a few ms.
    """

    def planes(self, size: int) -> dict[str, np.ndarray]:
        cache = self.__dict__.setdefault("by_size", {})
        if size not in cache:
            if len(cache) > 4:
                cache.clear()
            cache[size] = {
                "img": np.empty((3, size, size), np.float32),
                "fill": np.empty((3, size, size), np.float32),
                "label": np.empty((size, size), np.intp),
                "alpha": np.empty((size, size), np.float32),
                "tex": np.empty((size, size), np.float32),
                "tmp": np.empty((size, size), np.float32),
                "u8": np.empty((3, size, size), np.uint8),
            }
        return cache[size]


_WORKSPACE = _Workspace()


def _smooth_field(rng: np.random.Generator, size: int, grid: int, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """Write a zero-mean smooth random field (size x size, unit-ish amplitude, feature size
    size/grid) into ``out`` (``tmp`` is scratch of the same shape) and return ``out``.

    Gaussian knots on a (grid x grid) lattice, bilinearly upsampled by interpolating
    along one axis, transposing, and interpolating along the other (row gathers only;
    the result is transposed, which does not matter for an isotropic random field).
    """
    grid = int(max(2, min(grid, size)))
    knots = rng.standard_normal((grid, grid), dtype=np.float32)
    half = np.ascontiguousarray(_interp(knots, size).T)  # (grid, size)
    lo, hi, f = _interp_weights(size, grid)
    np.take(half, lo, axis=0, out=out)
    np.take(half, hi, axis=0, out=tmp)
    tmp -= out
    tmp *= f[:, None]
    out += tmp
    return out


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV of 1-D arrays (all in [0, 1]) to RGB in [0, 255], shape (n, 3) float32."""
    h, s, v = (np.asarray(a, dtype=np.float64).ravel() for a in (h, s, v))
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    i = sector.astype(int) % 6
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = np.stack([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)])  # (6, 3, n)
    rgb = choices[i, :, np.arange(h.size)]  # (n, 3)
    return (255.0 * rgb).astype(np.float32)


@lru_cache(maxsize=1024)
def _palette(key: int, c: float) -> np.ndarray:
    """The prompt's palette, (n_colours, 3) float32 in [0, 255]: hues around a
    prompt-specific base hue; more colours and a wider spread with complexity ``c``."""
    rng = np.random.default_rng(np.random.SeedSequence([key, 0x5EED]))
    n_colours = 3 + int(round(9 * c))
    base_hue = rng.random()
    hues = (base_hue + rng.normal(0.0, 0.08 + 0.35 * c, n_colours)) % 1.0
    sats = np.clip(rng.uniform(0.25, 0.6 + 0.35 * c, n_colours), 0, 1)
    vals = np.clip(rng.uniform(0.35, 0.95, n_colours), 0, 1)
    palette = _hsv_to_rgb(hues, sats, vals)
    palette.flags.writeable = False
    return palette


def _prompt_key(prompt: str) -> int:
    return zlib.crc32(" ".join(prompt.split()).lower().encode("utf-8"))


def render_image(prompt: str, seed: int, size: int = 256, complexity: float | None = None) -> np.ndarray:
    """A deterministic ``size`` x ``size`` x 3 uint8 picture for (prompt, seed).

    The prompt fixes the palette (same prompt, same colour scheme across seeds);
    the seed fixes the composition. ``complexity`` (default
    :func:`sim.model.quality.prompt_complexity` of the prompt) sets the detail: the number
    of shapes (2 to ~40 at 256 px), of palette colours (3 to 12), and the scale and
    strength of the texture (coarse and faint to pixel-fine and strong), so the
    encoded size grows with complexity.
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 8:
        raise ValueError(f"image size must be an integer >= 8, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if complexity is None:
        from sim.model.quality import prompt_complexity

        complexity = prompt_complexity(prompt)
    c = float(np.clip(complexity, 0.0, 1.0))
    if not np.isfinite(c):
        raise ValueError(f"complexity must be a finite number in [0, 1], got {complexity!r}")
    size = int(size)
    key = _prompt_key(prompt)
    rng = np.random.default_rng(np.random.SeedSequence([key, int(seed)]))
    palette = _palette(key, c)
    n_colours = len(palette)
    # The picture is built channels-first (3 x H x W) so that every full-image operation
    # runs on contiguous planes; it is transposed once at the end.
    # Background: sky-to-ground gradient with a horizon, plus large soft variations.
    horizon = float(rng.uniform(0.3, 0.7))
    rows = np.linspace(0.0, 1.0, size, dtype=np.float32)
    t = np.clip((rows - horizon) * 12.0 + 0.5, 0.0, 1.0)  # sharp-ish horizon
    profile = ((1.0 - t) * (1.0 - 0.3 * rows))[None, :] * palette[0][:, None] + (t * (0.7 + 0.3 * rows))[
        None, :
    ] * palette[1][:, None]  # (3, H)
    soft_rows = _interp(rng.standard_normal((4, 3), dtype=np.float32), size).T  # (3, H)
    soft_cols = _interp(rng.standard_normal((4, 3), dtype=np.float32), size).T  # (3, W)
    ws = _WORKSPACE.planes(size)
    img = ws["img"]
    img[...] = (profile + 12.0 * soft_rows)[:, :, None]
    img += (12.0 * soft_cols)[:, None, :]

    # Shapes: ellipses and rectangles, larger first; more (and smaller) ones with complexity.
    scale = size / 256.0
    n_shapes = 2 + int(round(38 * c))
    radii = size * rng.uniform(0.04, 0.22, n_shapes) * np.linspace(1.0, 0.35, n_shapes)
    centres = rng.uniform(0.05 * size, 0.95 * size, (n_shapes, 2))
    aspect = np.sqrt(rng.uniform(0.5, 2.0, n_shapes))
    kinds = rng.random(n_shapes)
    colours = palette[rng.integers(0, n_colours, n_shapes)]
    alphas = rng.uniform(0.6, 1.0, n_shapes).astype(np.float32)
    stripe_freq = rng.uniform(0.15, 0.6, n_shapes) / scale
    striped = rng.random(n_shapes) < 0.6 * c
    # Shapes are painted into a label map (index of the topmost shape per pixel; striped
    # pixels of shape i get a second, darker label), 2-D and inside each shape's bounding
    # box only; their colours are composited over the background once at the end.
    label = ws["label"]
    label.fill(0)  # 0 = background
    coords = np.arange(size, dtype=np.float32)
    ry_all = (radii * aspect).tolist()
    rx_all = (radii / aspect).tolist()
    cy_all, cx_all = centres[:, 0].tolist(), centres[:, 1].tolist()
    is_rect = (kinds >= 0.6).tolist()
    freq_all = stripe_freq.tolist()
    striped_all = striped.tolist()
    for i in range(n_shapes):
        ry, rx, cy, cx = ry_all[i], rx_all[i], cy_all[i], cx_all[i]
        if is_rect[i]:  # a rectangle filling 80% of the shape's box
            ry, rx = 0.8 * ry, 0.8 * rx
        y0, y1 = max(int(cy - ry + 0.5), 0), min(int(cy + ry + 0.5), size)
        x0, x1 = max(int(cx - rx + 0.5), 0), min(int(cx + rx + 0.5), size)
        if y1 <= y0 or x1 <= x0:
            continue
        dy, dx = coords[y0:y1] - cy, coords[x0:x1] - cx
        value: int | np.ndarray = i + 1
        if striped_all[i]:  # a patterned surface: every other stripe takes the darker label
            f = freq_all[i]
            value = (i + 1) + n_shapes * (np.sin((dy * f)[:, None] + (dx * f)[None, :]) > 0)
        region = label[y0:y1, x0:x1]
        if is_rect[i]:
            region[...] = value
        else:
            dy /= ry
            dx /= rx
            np.copyto(region, value, where=(dy * dy)[:, None] + (dx * dx)[None, :] <= 1.0)
    alpha = np.concatenate([np.zeros(1, np.float32), alphas, alphas])
    table = np.concatenate([np.zeros((1, 3), np.float32), colours, 0.65 * colours])
    alpha_map = np.take(alpha, label, out=ws["alpha"])  # (H, W)
    fill = ws["fill"]  # (3, H, W)
    for ch in range(3):
        np.take(np.ascontiguousarray(table[:, ch]), label, out=fill[ch])
    fill -= img
    fill *= alpha_map
    img += fill

    # Texture: a random field whose feature size shrinks (16 px -> 2 px at 256 px) and whose
    # amplitude grows with complexity, plus a faint per-pixel grain.
    grid = int(round((16 + 112 * c) * scale))
    texture = _smooth_field(rng, size, grid, out=ws["tex"], tmp=ws["tmp"])
    texture *= 3.0 + 22.0 * c
    grain = rng.random(dtype=np.float32, out=ws["tmp"])
    grain -= 0.5
    grain *= 2.0 + 10.0 * c
    texture += grain
    img += texture
    np.clip(img, 0.0, 255.0, out=img)
    planes_u8 = ws["u8"]
    np.copyto(planes_u8, img, casting="unsafe")  # truncation, as astype(uint8)
    out = np.empty((size, size, 3), dtype=np.uint8)
    for ch in range(3):  # per-plane strided writes beat one transposing copy
        out[:, :, ch] = planes_u8[ch]
    return out


# --- codecs ------------------------------------------------------------------------------


def _check_format(fmt: str) -> str:
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; known: {', '.join(FORMATS)}")
    return fmt.lower()


def encode_image(pixels: np.ndarray, fmt: str, jpeg_quality: int = 85) -> bytes:
    """Encode HxWx3 uint8 ``pixels`` as ``fmt`` (``"jpeg"``, ``"png"`` or ``"raw"``)."""
    fmt = _check_format(fmt)
    arr = np.asarray(pixels)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"pixels must be an HxWx3 uint8 array, got shape {arr.shape} dtype {arr.dtype}")
    h, w = arr.shape[:2]
    if fmt == "raw":
        if not (0 < h <= 0xFFFF and 0 < w <= 0xFFFF):
            raise ValueError(f"raw format holds images up to 65535 x 65535, got {h} x {w}")
        return _RAW_HEADER.pack(RAW_MAGIC, h, w) + np.ascontiguousarray(arr).tobytes()
    buf = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(arr))
    if fmt == "png":
        # zlib level 3: about as small as the default level 6 on these images, 3x faster.
        image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        image.save(
            buf,
            format="JPEG",
            quality=int(jpeg_quality),
            restart_marker_rows=JPEG_RESTART_MARKER_ROWS,
        )
        if not jpeg_restart_markers_supported():
            _warn_no_restart_markers()
    return buf.getvalue()


@lru_cache(maxsize=1)
def jpeg_restart_markers_supported() -> bool:
    """Whether this Pillow writes JPEG restart markers (a DRI segment) when asked to."""
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="JPEG", restart_marker_rows=1)
    return b"\xff\xdd" in buf.getvalue()


@lru_cache(maxsize=1)
def _warn_no_restart_markers() -> None:
    warnings.warn(
        "this Pillow version ignores restart_marker_rows: JPEGs carry no restart markers, so one bit "
        "error damages the rest of the image (upgrade Pillow for error-resilient JPEG)",
        RuntimeWarning,
        stacklevel=3,
    )


_PIL_LOCK = threading.Lock()


@contextlib.contextmanager
def _lenient_truncation(enabled: bool) -> Iterator[None]:
    """Let Pillow decode truncated images, restoring its module flag afterwards.

    Pillow only offers the module-level ``ImageFile.LOAD_TRUNCATED_IMAGES``; it is
    set under a lock for the duration of one decode and always restored, so no
    state leaks to other code. Warnings (e.g. decompression-bomb) are silenced
    locally too.
    """
    with _PIL_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = enabled
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _png_chunks_intact(data: bytes) -> str | None:
    """None if every PNG chunk's CRC matches (and the layout parses), else why not."""
    if not data.startswith(_PNG_SIGNATURE):
        return "bad PNG signature"
    pos, n = len(_PNG_SIGNATURE), len(data)
    while pos + 12 <= n:
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > n:
            return "PNG chunk runs past the end of the data"
        ctype = data[pos + 4 : pos + 8]
        if zlib.crc32(data[pos + 4 : pos + 8 + length]) != int.from_bytes(data[end - 4 : end], "big"):
            return f"PNG chunk {ctype!r} fails its CRC"
        if ctype == b"IEND":
            return None
        pos = end
    return "PNG data ends before IEND"


def decode_image_checked(data: bytes, fmt: str, expected_shape: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """Like :func:`decode_image`, and also say why decoding failed (``""`` on success)."""
    fmt = _check_format(fmt)
    shape = tuple(int(s) for s in expected_shape)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"expected_shape must be (height, width, 3), got {expected_shape!r}")
    h, w = shape[:2]
    data = bytes(data)
    if fmt == "raw":
        if len(data) < RAW_HEADER_BYTES:
            return None, "raw data shorter than its header"
        magic, rh, rw = _RAW_HEADER.unpack_from(data)
        if magic != RAW_MAGIC:
            return None, "raw header magic corrupted"
        if (rh, rw) != (h, w):
            return None, f"raw header says {rh}x{rw}, expected {h}x{w}"
        if len(data) != RAW_HEADER_BYTES + h * w * 3:
            return None, f"raw payload has {len(data) - RAW_HEADER_BYTES} bytes, expected {h * w * 3}"
        return np.frombuffer(data, dtype=np.uint8, offset=RAW_HEADER_BYTES).reshape(h, w, 3).copy(), ""
    if fmt == "png":
        why = _png_chunks_intact(data)
        if why is not None:
            return None, why
    try:
        with _lenient_truncation(fmt == "jpeg"):
            with Image.open(io.BytesIO(data), formats=["JPEG" if fmt == "jpeg" else "PNG"]) as image:
                if image.size != (w, h):
                    return None, f"decodes to {image.size[1]}x{image.size[0]}, expected {h}x{w}"
                if image.mode != "RGB":
                    return None, f"decodes to mode {image.mode}, expected RGB"
                image.load()
                arr = np.asarray(image)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "undecodable"
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    if arr.shape != shape or arr.dtype != np.uint8:
        return None, f"decodes to {arr.shape} {arr.dtype}, expected {shape} uint8"
    return arr, ""


def decode_image(data: bytes, fmt: str, expected_shape: tuple[int, ...]) -> np.ndarray | None:
    """Pixels of ``data`` decoded as ``fmt``, or None when the bytes no longer decode.

    Never raises on bad data: garbage, truncated or header-corrupted bytes, a decode
    of the wrong size or colour mode all give None. A JPEG that is cut short or has
    damaged entropy-coded segments but still parses decodes *with damage* (see the
    module docstring). Raises ValueError only for a bad ``fmt`` or ``expected_shape``.
    """
    return decode_image_checked(data, fmt, expected_shape)[0]
