"""Image decoding, checks and resizing on the device, exactly as in training.

The training pipeline (``kdefect.data.pipeline.load_image``) decodes to RGB
(grey replicated, alpha dropped), resizes with TF's antialiased bilinear
kernel (``scale_and_translate``) and rounds to uint8.  Pillow's BILINEAR is
close but not equal, so ``resize_bilinear`` re-implements TF's kernel in numpy
(same float32 weights, same accumulation order): on NEU-sized images the
device sees bit-for-bit the pixels the model was validated on (see
tests/edge/test_preprocess.py).  Bad input raises ``ImageRejected`` with a
reason that the runtime logs as an error record.

Resize modes (``data.resize``; the sidecar's ``input.resize``), target (H, W):

- ``squash``: the whole image resized to (H, W); the aspect ratio is not kept.
- ``letterbox``: resized to :func:`letterbox_size` (aspect kept), rounded to
  uint8, then padded with 0 to (H, W), centred.  Nothing of the part is lost.
- ``crop``: the centred :func:`crop_box` with the target aspect ratio, resized
  to (H, W).  It CUTS the image edges off: a defect near the edge of an
  inspection image can vanish, which makes it a safety risk on the line; that
  is why ``auto`` never picks it.

The sizes and boxes are integer arithmetic (here, and the same formulas in TF
ops in ``kdefect.data.pipeline``), so host and device agree bit-exactly.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from kdefect.errors import ConfigError

MAX_PIXELS = 50_000_000  # beyond this a file is a decompression bomb, not a part photo
MIN_SIDE = 4
RESIZE_MODES = ("squash", "letterbox", "crop")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def check_resize(mode: str) -> str:
    """``mode`` if it is a concrete resize mode; ``auto`` or anything else raises ``ConfigError``."""
    if mode == "auto":
        raise ConfigError("data.resize is still 'auto': resolve it first with kdefect.data.recipe.resolve_auto.")
    if mode not in RESIZE_MODES:
        raise ConfigError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}.")
    return mode


def resize_mode(data_cfg: object) -> str:
    """The resize mode a run's data config was trained with: a saved config without one (older runs) is squash.

    An old ``config.yaml`` has no ``resize`` key, so it reads as the dataclass default ``auto``; runs that
    resolved ``auto`` saved the concrete mode.  Hence ``auto`` (or no attribute) means squash here.
    """
    mode = getattr(data_cfg, "resize", None) or "squash"
    return check_resize("squash" if mode == "auto" else str(mode))


def letterbox_size(h: int, w: int, height: int, width: int) -> tuple[int, int]:
    """(nh, nw): an h x w image scaled by min(height/h, width/w), each side rounded (half up), at least 1.

    Exact integer arithmetic (no float rounding): the limiting side is exactly the target's.
    """
    h, w, height, width = int(h), int(w), int(height), int(width)
    if height * w <= width * h:  # height limits: scale = height / h
        return height, max(1, (2 * w * height + h) // (2 * h))
    return max(1, (2 * h * width + w) // (2 * w)), width


def crop_box(h: int, w: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, ch, cw): the largest centred box of an h x w image with the target's aspect ratio."""
    h, w, height, width = int(h), int(w), int(height), int(width)
    if w * height > h * width:  # too wide
        ch, cw = h, max(1, (h * width) // height)
    else:
        ch, cw = max(1, (w * height) // width), w
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class ImageRejected(Exception):
    """An input the runtime cannot classify; ``str(exc)`` is the reason logged."""


@dataclass(frozen=True)
class ImagePolicy:
    """What the line promises about its images.

    ``color``: ``"strict"`` rejects grayscale / alpha / other colour modes that
    differ from the model's channels (a camera switched to mono is a fault worth
    seeing); ``"convert"`` converts them like the training decoder does.
    ``expect_size``: (width, height) every image must have, or None for any size.
    ``train_modes``: modes seen in the training data are never a camera fault: a model trained on grey
    cells accepts grey cells.
    """

    color: str = "strict"
    expect_size: tuple[int, int] | None = None
    # colour modes the model was trained on (the sidecar's ``input.modes``): accepted under "strict" too
    train_modes: frozenset[str] = frozenset()


@functools.lru_cache(maxsize=32)
def _spans(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray]:
    """TF ``scale_and_translate`` spans, triangle kernel, antialias: (starts (n,), weights (n, span)).

    Cached: a line camera has one resolution, so this runs once per run.
    """
    scale = np.float32(np.float32(out_size) / np.float32(in_size))
    inv_scale = np.float32(1.0 / float(scale))
    kscale = max(inv_scale, np.float32(1.0))
    inv_kscale = np.float32(np.float32(1.0) / kscale)  # TF multiplies by the reciprocal: keep it bit-exact
    span = min(2 * int(np.ceil(kscale)) + 1, in_size)
    f32 = np.float32
    sample = (np.arange(out_size, dtype=f32) + f32(0.5)) * inv_scale
    valid = (sample >= 0) & (sample <= in_size)
    starts = np.clip(np.ceil(sample - kscale - f32(0.5)), 0, in_size - 1).astype(np.int64)
    ends = np.clip(np.floor(sample + kscale - f32(0.5)), 0, in_size - 1).astype(np.int64) + 1
    src = starts[:, None] + np.arange(span)[None, :]
    inside = src < ends[:, None]
    pos = (src.astype(f32) + f32(0.5) - sample[:, None]) * inv_kscale
    w = np.where(inside, np.maximum(f32(0), f32(1) - np.abs(pos)), f32(0)).astype(f32)
    total = np.zeros(out_size, f32)
    for j in range(span):  # sequential float32 sum over the span, as in TF
        total = total + w[:, j]
    ok = valid & (np.abs(total) >= f32(1000.0 * np.finfo(f32).tiny))
    weights = np.where(ok[:, None], w * (f32(1.0) / np.where(ok, total, f32(1)))[:, None], f32(0)).astype(f32)
    starts = np.where(valid, starts, 0)
    starts.flags.writeable = weights.flags.writeable = False
    return starts, weights


def _gather_rows(x: np.ndarray, starts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum over each span of rows (axis 0), float32, in TF's accumulation order."""
    acc = np.zeros((len(starts), *x.shape[1:]), np.float32)
    for i in range(weights.shape[1]):
        idx = np.minimum(starts + i, x.shape[0] - 1)  # past the edge the weight is 0: any valid row will do
        acc += weights[:, i, None, None] * x[idx]
    return acc


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) pixels -> (h, w, C) float32, equal to ``tf.image.resize(image, size, "bilinear", antialias=True)``.

    TF's ``scale_and_translate``: rows first, then columns, float32 throughout.  Columns are gathered on
    the transposed image (contiguous rows are several times faster to gather).
    """
    h, w = int(size[0]), int(size[1])
    x = np.asarray(image, dtype=np.float32)
    if x.shape[:2] == (h, w):
        return x
    x = _gather_rows(x, *_spans(h, x.shape[0]))
    xt = np.ascontiguousarray(x.transpose(1, 0, 2))
    return np.ascontiguousarray(_gather_rows(xt, *_spans(w, xt.shape[0])).transpose(1, 0, 2))


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (H, W, 1) like ``tf.image.rgb_to_grayscale`` on uint8 (floor(g * 255.5))."""
    v = np.asarray(rgb, np.float32) * np.float32(1.0 / 255.0)
    wr, wg, wb = np.array([0.2989, 0.5870, 0.1140], np.float32)
    # TF's sum, in order and without fused multiply-add: a BLAS ``@`` (FMA) differed by 1 level on ~1 pixel in 10^6
    g = (v[..., 0] * wr + v[..., 1] * wg) + v[..., 2] * wb
    return np.clip(np.floor(g * np.float32(255.5)), 0, 255).astype(np.uint8)[..., None]


def _to_rgb(im: Image.Image, channels: int, color: str, name: str,
            train_modes: frozenset[str] = frozenset()) -> Image.Image | np.ndarray:
    """Decode to RGB like the training decoder; in strict mode refuse a colour mode the model was not made for
    (one it was trained on is accepted)."""
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info)
    gray = im.mode in _GRAY_MODES or im.mode == "LA"
    if color == "strict" and im.mode not in train_modes and (
            has_alpha or (gray and channels == 3) or im.mode in ("CMYK", "HSV", "LAB")):
        kind = (f"has an alpha channel (mode {im.mode})" if has_alpha else
                f"is grayscale (mode {im.mode})" if gray else f"is in colour mode {im.mode}")
        want = "RGB colour" if channels == 3 else "grayscale or RGB"
        raise ImageRejected(
            f"{name} {kind} but the model expects {want} images; fix the camera / export settings "
            "or run with --color convert to convert it like the training decoder does"
        )
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I") or im.mode == "F":  # 16-bit / float grayscale: scale to 8 bit
        arr = np.asarray(im, dtype=np.float32)
        peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).round().astype(np.uint8), "L")
    if im.mode == "L":  # grey replicated as a read-only view: no copy, and the resize sees it is grey for free
        return grey_rgb(np.asarray(im))
    return im.convert("RGB")  # grey replicated, alpha dropped (not composited): as tf.io.decode_image + [..., :3]


def grey_rgb(y: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) read-only view with the three channels equal (stride 0: no copy).

    Why: grey content (NEU, mono cameras) is most line images; ``_resize_round`` recognises the view
    from its stride and resizes one channel without comparing the three.
    """
    return np.broadcast_to(y[..., None], (*y.shape, 3))


def load_image(source: str | Path | bytes | np.ndarray, channels: int = 3, policy: ImagePolicy | None = None,
               name: str | None = None) -> np.ndarray:
    """Decode and check one input; returns (H, W, 3) uint8 RGB. Raises ``ImageRejected`` with the reason.

    Grey content may come back as a read-only view (:func:`grey_rgb`): copy it before writing into it.
    EXIF orientation is ignored on purpose: TF's decoders ignore it too.
    """
    policy = policy or ImagePolicy()
    name = name or (str(source) if isinstance(source, (str, Path)) else "image")
    if isinstance(source, np.ndarray):
        arr = source if source.ndim == 3 else source[..., None]
        if arr.dtype != np.uint8:
            raise ImageRejected(f"{name}: frame dtype {arr.dtype} is not uint8")
        im = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        return _check(im, channels, policy, name)
    try:
        if isinstance(source, bytes):
            fh = io.BytesIO(source)
        else:
            if Path(source).stat().st_size == 0:
                raise ImageRejected(f"{name} is empty (0 bytes)")
            fh = open(source, "rb")  # noqa: SIM115 - closed below
        with fh, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _check(_decode(fh, name), channels, policy, name)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected(f"{name} is not an image Pillow can read (unknown or corrupt format)") from None
    except FileNotFoundError:
        raise ImageRejected(f"{name} disappeared before it could be read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        reason = "is truncated" if "truncated" in str(exc) else f"could not be decoded ({exc})"
        raise ImageRejected(f"{name} {reason}") from None


def _decode(fh: BinaryIO, name: str) -> Image.Image | np.ndarray:
    """Decode fully; JPEGs with libjpeg's fast integer DCT, like ``tf.io.decode_image``'s default.

    Pillow's default (accurate DCT) differs from TF by up to ~10 grey levels on NEU images.  Pillow's "draft"
    decoder flag selects the fast DCT but also plain (not "fancy") chroma upsampling: bit-exact with TF for
    grayscale, 4:4:4 and grey-content JPEGs (NEU's are 4:2:0 with neutral chroma).  A subsampled JPEG whose
    colours are not neutral is decoded again with Pillow's default, which is the closer of the two there.
    Grey content comes back as the (H, W, 3) view of :func:`grey_rgb`, already an RGB array.
    """
    im = Image.open(fh)
    _check_size(im.size, name)
    sampling = _jpeg_sampling(im)
    if sampling is None:
        im.load()
        return im
    im.decoderconfig = (1, 1)  # (scale 1, draft on): what JpegImageFile.draft() sets, minus the downscaling
    im.load()
    if sampling > 0 and im.mode == "RGB":
        a = np.asarray(im)
        if (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
            return grey_rgb(a[..., 0])  # checked grey: hand on one channel, not a second copy of three
        fh.seek(0)
        im = Image.open(fh)
        im.load()
    return im


def _jpeg_sampling(im: Image.Image) -> int | None:
    """Chroma subsampling of a JPEG that may use the fast-DCT path (-1 grey, 0 4:4:4, 1 4:2:2, 2 4:2:0), or None."""
    if im.format != "JPEG" or im.mode not in ("L", "RGB") or getattr(im, "decoderconfig", None):
        return None
    try:
        from PIL import JpegImagePlugin  # lazy: Pillow loads only when images are read

        return int(JpegImagePlugin.get_sampling(im))
    except (AttributeError, ImportError, TypeError, ValueError):  # another Pillow: keep its default decoder
        return None


def _check_size(size: tuple[int, int], name: str) -> None:
    w, h = size
    if min(w, h) < MIN_SIDE or w * h > MAX_PIXELS:
        raise ImageRejected(f"{name} has an implausible size {w}x{h} (allowed: sides >= {MIN_SIDE}, <= {MAX_PIXELS} px)")


def _check(im: Image.Image | np.ndarray, channels: int, policy: ImagePolicy, name: str) -> np.ndarray:
    size = (im.shape[1], im.shape[0]) if isinstance(im, np.ndarray) else im.size  # an array: RGB decoded already
    _check_size(size, name)
    if policy.expect_size is not None and tuple(size) != tuple(policy.expect_size):
        ew, eh = policy.expect_size
        raise ImageRejected(f"{name} is {size[0]}x{size[1]} but the line expects {ew}x{eh} (--expect-size)")
    if isinstance(im, np.ndarray):
        return im
    return np.asarray(_to_rgb(im, channels, policy.color, name, policy.train_modes), dtype=np.uint8)


def _resize_round(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize + round + clip (float32 values 0..255), as ``tf.image.resize`` + round + clip in the pipeline."""
    grey = rgb.shape[-1] == 3 and (rgb.strides[-1] == 0 or  # grey_rgb's view, or equal channels
                                   ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()))
    if grey:
        # grey content (NEU, mono cameras): channels resize independently, so one channel gives the same, 3x cheaper
        return np.repeat(np.clip(np.round(resize_bilinear(rgb[..., :1], size)), 0, 255), 3, axis=-1)
    return np.clip(np.round(resize_bilinear(rgb, size)), 0, 255)


def prepare(rgb: np.ndarray, size: tuple[int, int], channels: int = 3, resize: str = "squash") -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (h, w, channels) model input: resize, round to uint8, grey if asked.

    The same steps, in the same order, as ``kdefect.data.pipeline.load_image``; ``resize`` is the
    sidecar's ``input.resize`` (squash | letterbox | crop, see the module docstring).
    """
    mode = check_resize(resize)
    height, width = int(size[0]), int(size[1])
    if mode == "letterbox":
        nh, nw = letterbox_size(rgb.shape[0], rgb.shape[1], height, width)
        top, left = (height - nh) // 2, (width - nw) // 2
        x = np.zeros((height, width, rgb.shape[-1]), np.float32)
        x[top:top + nh, left:left + nw] = _resize_round(rgb, (nh, nw))
    elif mode == "crop":
        top, left, ch, cw = crop_box(rgb.shape[0], rgb.shape[1], height, width)
        x = _resize_round(rgb[top:top + ch, left:left + cw], (height, width))
    else:
        x = _resize_round(rgb, (height, width))
    if channels == 1:
        x = rgb_to_gray(x.astype(np.uint8))
    return x.astype(np.float32, copy=False)
