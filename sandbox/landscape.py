"""Drift landscapes: D(r, A) and the objective's ratio derivative on a fixed grid.

The Discovered Policy Optimisation paper reads a drift off the heat map of
d(r*A - D(r, A))/dr over (r, A). Computing it means running the candidate, so the sandbox
does it (sandbox.stages: load -> landscape) and leaves out/landscape.npz; the trusted side
(harness/landscape.py) asks for it and reads the file back here, as untrusted data: no
pickle, a size cap checked before anything is decompressed, exactly the expected keys,
dtypes, shapes and grid.

Grid: 161 ratios log-spaced on [1/3, 3] (symmetric in log r, so 1 is the middle point
exactly) and 81 advantages in steps of 0.05 on [-2, 2] (the range of a normalised
advantage that matters; 0, +-0.5 and +-1 lie on it). Arrays over the grid are indexed
[advantage, ratio]. NaN and inf values are data (a candidate may blow up at the edges):
they come back as NaN, for the analysis to leave out.
"""

import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LANDSCAPE_FILE = "landscape.npz"
RATIO_RANGE, RATIO_POINTS = (1.0 / 3.0, 3.0), 161
ADVANTAGE_STEPS = 40  # steps of 0.05 on each side of 0
MAX_LANDSCAPE_BYTES = 4 * 1024**2  # the real file is about 100 kB
KEYS = ("ratio", "advantage", "drift", "d_objective_dr")


class LandscapeError(ValueError):
    pass


@dataclass(frozen=True, eq=False)
class Landscape:
    ratio: np.ndarray  # (R,) increasing, contains 1
    advantage: np.ndarray  # (N,) increasing, contains 0
    drift: np.ndarray  # (N, R): D(ratio, advantage), NaN where not finite
    d_objective_dr: np.ndarray  # (N, R): A - dD/dr, NaN where not finite


def landscape_axes() -> tuple[np.ndarray, np.ndarray]:
    """The (ratio, advantage) grid, float32, as the candidate sees it."""
    log_r = np.log(RATIO_RANGE[1])
    ratio = np.exp(np.linspace(-log_r, log_r, RATIO_POINTS))
    ratio[RATIO_POINTS // 2] = 1.0
    advantage = np.arange(-ADVANTAGE_STEPS, ADVANTAGE_STEPS + 1) / (ADVANTAGE_STEPS / 2)
    return ratio.astype(np.float32), advantage.astype(np.float32)


def read_landscape(path: Path) -> Landscape:
    """Load and validate a landscape file written by the sandbox; raise LandscapeError."""
    path = Path(path)
    try:
        info = path.lstat()
    except OSError:
        raise LandscapeError("the sandbox left no landscape file") from None
    if not stat.S_ISREG(info.st_mode):  # a link could point the reader anywhere on the host
        raise LandscapeError("the landscape file is not a regular file")
    if info.st_size > MAX_LANDSCAPE_BYTES:
        raise LandscapeError(
            f"the landscape file is {info.st_size} bytes, over the {MAX_LANDSCAPE_BYTES} limit"
        )
    arrays = _load_arrays(path)
    ratio_axis, advantage_axis = landscape_axes()
    ratio, advantage = (
        _axis(arrays, key, expected)
        for key, expected in (("ratio", ratio_axis), ("advantage", advantage_axis))
    )
    grids = [
        _grid(arrays, key, (advantage.size, ratio.size)) for key in ("drift", "d_objective_dr")
    ]
    return Landscape(ratio, advantage, *grids)


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    expected = {f"{key}.npy" for key in KEYS}
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile) as error:
        raise LandscapeError(f"the landscape file is not an npz archive: {error}") from None
    names = [m.filename for m in members]
    if set(names) != expected or len(names) != len(expected):
        raise LandscapeError(
            f"the landscape file holds {sorted(names)[:10]}, expected {sorted(expected)}"
        )
    # Uncompressed sizes, checked before np.load inflates anything (a zip bomb).
    if sum(m.file_size for m in members) > MAX_LANDSCAPE_BYTES:
        raise LandscapeError("the landscape arrays are over the size limit")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise LandscapeError(
            f"the landscape file is unreadable: {type(error).__name__}: {error}"
        ) from None


def _check_dtype(key: str, array: np.ndarray) -> None:
    if array.dtype.kind != "f" or array.dtype.itemsize not in (4, 8):
        raise LandscapeError(
            f"landscape {key} has dtype {array.dtype}, expected float32 or float64"
        )


def _axis(arrays: dict, key: str, expected: np.ndarray) -> np.ndarray:
    array = arrays[key]
    _check_dtype(key, array)
    if array.shape != expected.shape:
        raise LandscapeError(f"landscape {key} has shape {array.shape}, expected {expected.shape}")
    # The axes come from the untrusted side: they must be the grid that was asked for.
    if not (np.isfinite(array).all() and np.allclose(array, expected, rtol=1e-6, atol=0.0)):
        raise LandscapeError(f"landscape {key} is not the requested grid")
    return _frozen(expected.astype(np.float64))


def _grid(arrays: dict, key: str, shape: tuple[int, int]) -> np.ndarray:
    array = arrays[key]
    _check_dtype(key, array)
    if array.shape != shape:
        raise LandscapeError(
            f"landscape {key} has shape {array.shape}, expected {shape} (advantage, ratio)"
        )
    array = array.astype(np.float64)
    array[~np.isfinite(array)] = np.nan
    return _frozen(array)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array
