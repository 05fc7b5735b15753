"""``data.source: elpv[:levels|binary][:mono|poly]``: the ELPV solar-cell dataset as class folders.

2,624 electroluminescence images (300x300, 8-bit grey) of mono- and
polycrystalline solar cells cut from 44 PV modules, each annotated with a
defect probability (0, 1/3, 2/3 or 1: the experts' certainty that the cell is
defective) and the module type.  They ship in the PyPI package
``elpv-dataset`` (``pip install elpv-dataset``); kdefect copies them once into
its cache (never into a repository) as ``<cache>/elpv/<mode>[-<type>]/<class>/
<original stem>.png`` so the folder indexer, split lists and export work on
them like on any other folder.

Classes: ``levels`` (the default) -> ``good`` (p = 0), ``p033``, ``p067``,
``p100``; ``binary`` -> ``good`` (p < 0.5: p = 0 or 1/3) and ``defective``
(p >= 0.5: p = 2/3 or 1): a functional / defective split at 50 %.  The
papers on this set use more than one binary protocol (some drop the
uncertain cells), so check theirs before comparing accuracies.  ``:mono`` / ``:poly`` keep one module type.

Credit: Buerhop-Lutz, C.; Deitsch, S.; Maier, A.; Gallwitz, F.; Berger, S.;
Doll, B.; Hauch, J.; Camus, C.; Brabec, C. J. (2018) "A benchmark for visual
identification of defective solar cells in electroluminescence imagery",
EU PVSEC 2018, doi:10.4229/35thEUPVSEC20182018-5CV.3.15; and Deitsch, S.;
Christlein, V.; Berger, S.; Buerhop-Lutz, C.; Maier, A.; Gallwitz, F.;
Riess, C. (2019) "Automatic classification of defective photovoltaic module
cells in electroluminescence images", Solar Energy 185, 455-468,
doi:10.1016/j.solener.2019.02.067.

Licence: the images are CC BY-NC-SA 4.0 (attribution, non-commercial use only,
share alike); for commercial use contact the authors (ZAE Bayern).  TF-free.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from kdefect.errors import ConfigError, DataError
from kdefect.utils.io import atomic_dir

from .synthetic import cache_root

log = logging.getLogger(__name__)

MODES = ("levels", "binary")
CELL_TYPES = ("mono", "poly")
LEVEL_CLASSES = ("good", "p033", "p067", "p100")
BINARY_CLASSES = ("good", "defective")
LICENCE = "CC BY-NC-SA 4.0 (non-commercial use only, with attribution, share alike)"
_FORMAT = 1  # bump when the cached layout changes


def parse_elpv(location: str) -> tuple[str, str | None]:
    """(mode, cell type or None) from the part after ``elpv:`` ('' -> levels, all types)."""
    mode, cell = None, None
    for part in filter(None, location.lower().split(":")):
        if part in MODES and mode is None:
            mode = part
        elif part in CELL_TYPES and cell is None:
            cell = part
        else:
            raise ConfigError(f"data.source 'elpv:{location}' is not understood: use elpv, elpv:levels or "
                              "elpv:binary, optionally followed by :mono or :poly (e.g. elpv:binary:mono).")
    return mode or "levels", cell


def elpv_classes(mode: str) -> tuple[str, ...]:
    return BINARY_CLASSES if mode == "binary" else LEVEL_CLASSES


def elpv_class(prob: float, mode: str) -> str:
    """The class of a cell with defect probability ``prob`` under ``mode``."""
    if mode == "binary":
        return "defective" if prob >= 0.5 else "good"
    return LEVEL_CLASSES[round(float(prob) * 3)]


def _package():
    try:
        import elpv_dataset  # lazy: the elpv package loads only for source elpv
    except ImportError as exc:
        raise DataError(f"data.source elpv needs the ELPV images: pip install elpv-dataset (the data is {LICENCE}; "
                        "for commercial use contact its authors).") from exc
    return elpv_dataset


def elpv_labels() -> tuple[list[Path], np.ndarray, list[str], str]:
    """(image files, defect probabilities, cell types, package version) from the package's labels.csv."""
    pkg = _package()
    data = Path(pkg.__file__).resolve().parent / "data"
    csv = data / "labels.csv"
    if not csv.is_file():
        raise DataError(f"the elpv-dataset package has no '{csv}'; reinstall it (pip install --force-reinstall "
                        "elpv-dataset).")
    files, probs, types = [], [], []
    for n, line in enumerate(csv.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rel, prob, cell = parts[0], float(parts[1]), parts[2]
        except (IndexError, ValueError):
            raise DataError(f"{csv}:{n + 1}: expected 'path probability type', got {line!r}.") from None
        if not 0 <= prob <= 1 or cell not in CELL_TYPES:
            raise DataError(f"{csv}:{n + 1}: probability must be in [0, 1] and type mono or poly, got {line!r}.")
        files.append(data / rel)
        probs.append(prob)
        types.append(cell)
    version = getattr(pkg, "__version__", None) or _dist_version()
    return files, np.asarray(probs, np.float64), types, version


def _dist_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("elpv-dataset")
    except PackageNotFoundError:
        return "unknown"


def materialize_elpv(mode: str = "levels", cell_type: str | None = None,
                     cache_dir: str | Path | None = None) -> Path:
    """Copy the ELPV images into ``<cache>/elpv/<mode>[-<type>]/<class>/`` once (atomically); returns that root.

    An existing, complete copy made from the same package version is reused.
    """
    if mode not in MODES or cell_type not in (None, *CELL_TYPES):
        raise ConfigError(f"ELPV mode must be one of {MODES} and type one of {CELL_TYPES} or none; "
                          f"got {mode!r}, {cell_type!r}.")
    files, probs, types, version = elpv_labels()
    pick = [i for i, t in enumerate(types) if cell_type in (None, t)]
    key = json.dumps({"version": version, "mode": mode, "type": cell_type, "n": len(pick), "v": _FORMAT},
                     sort_keys=True)
    root = cache_root(cache_dir) / "elpv" / (mode + (f"-{cell_type}" if cell_type else ""))
    done = root / ".complete"
    if done.is_file() and done.read_text(encoding="utf-8") == key:
        return root
    missing = [str(files[i]) for i in pick if not files[i].is_file()]
    if missing:
        raise DataError(f"{len(missing)} ELPV image(s) missing from the elpv-dataset package (e.g. {missing[0]}); "
                        "reinstall it: pip install --force-reinstall elpv-dataset.")
    log.info("copying %d ELPV images (%s%s, %s) to %s", len(pick), mode, f", {cell_type}" if cell_type else "",
             LICENCE, root)
    with atomic_dir(root) as tmp:
        for cls in elpv_classes(mode):
            (tmp / cls).mkdir()
        for i in pick:
            shutil.copyfile(files[i], tmp / elpv_class(probs[i], mode) / f"{files[i].stem}.png")
        (tmp / "LICENSE.txt").write_text(
            f"ELPV dataset (elpv-dataset {version}), {LICENCE}.\n"
            "Buerhop-Lutz et al. (2018), doi:10.4229/35thEUPVSEC20182018-5CV.3.15; "
            "Deitsch et al. (2019), doi:10.1016/j.solener.2019.02.067.\n", encoding="utf-8")
        (tmp / ".complete").write_text(key, encoding="utf-8")
    return root
