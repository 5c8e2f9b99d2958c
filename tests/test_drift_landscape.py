"""Drift landscapes through the real process sandbox, the untrusted-file reader, the feature
detection on the PPO, DPO and zero baselines, and `scientist plot drift` for a file and for
an archive id."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from harness.landscape import compute_landscape
from sandbox.landscape import (
    MAX_LANDSCAPE_BYTES,
    Landscape,
    LandscapeError,
    landscape_axes,
    read_landscape,
)
from sandbox.tasks import TASKS_DIR, load_task
from scientist.analysis import detect_features
from scientist.plots import save_drift_plot

BASELINES = TASKS_DIR / "mirror_drift" / "baselines"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def landscapes() -> dict[str, Landscape]:
    spec = load_task("mirror_drift")
    return {
        name: compute_landscape("mirror_drift", spec.baseline_source(name), sandbox="process")
        for name in ("ppo", "dpo", "zero")
    }


@pytest.fixture(scope="module")
def features(landscapes):
    return {name: detect_features(landscape) for name, landscape in landscapes.items()}


def step(ratio: np.ndarray) -> float:
    """One grid step in r near the clip edges, the resolution of every ratio found."""
    return float(ratio[1] / ratio[0] - 1.0) * 1.25


# -- the landscape itself -----------------------------------------------------------------


def test_the_grid_and_the_values_match_the_closed_forms(landscapes):
    ratio, advantage = landscapes["ppo"].ratio, landscapes["ppo"].advantage
    assert ratio.shape == (161,) and advantage.shape == (81,) and np.all(np.diff(ratio) > 0)
    assert 1.0 in ratio and 0.0 in advantage and -1.0 in advantage and 1.0 in advantage
    r, a = np.meshgrid(ratio, advantage)
    for landscape in landscapes.values():
        assert landscape.drift.shape == landscape.d_objective_dr.shape == (81, 161)
        assert not np.isnan(landscape.d_objective_dr).any()
        one = int(np.flatnonzero(ratio == 1.0)[0])
        np.testing.assert_allclose(
            landscape.d_objective_dr[:, one], advantage, atol=1e-5
        )  # flat drift at r = 1
    np.testing.assert_array_equal(landscapes["zero"].drift, 0.0)
    np.testing.assert_allclose(landscapes["zero"].d_objective_dr, a, atol=1e-6)
    np.testing.assert_allclose(
        landscapes["ppo"].drift, np.maximum((r - np.clip(r, 0.8, 1.2)) * a, 0.0), atol=1e-5
    )
    # DPO for A > 0: J = A + 2 tanh((r - 1) A / 2) beyond r = 1, so dJ/dr = A sech^2((r - 1) A / 2).
    upper = (a > 0) & (r > 1)
    expected = a / np.cosh((r - 1.0) * a / 2.0) ** 2
    np.testing.assert_allclose(landscapes["dpo"].d_objective_dr[upper], expected[upper], atol=1e-4)


# -- features of the baselines ------------------------------------------------------------


def test_ppo_is_a_symmetric_hard_clip_without_rollback(features, landscapes):
    f, tolerance = features["ppo"], step(landscapes["ppo"].ratio)
    assert f.hard_clip and not f.cautious_optimism and not f.rollback and f.symmetric
    assert f.asymmetry < 0.02
    assert f.positive.stop_ratio == pytest.approx(1.2, abs=tolerance)
    assert f.negative.stop_ratio == pytest.approx(0.8, abs=tolerance)
    for side in (f.positive, f.negative):
        assert side.sharpest_drop == pytest.approx(
            1.0, abs=1e-3
        )  # zero gradient beyond the edge at once
        assert side.beyond_clip == pytest.approx(0.0, abs=1e-3) and side.pushback_fraction == 0.0
    assert f.positive.zero_region[0] == landscapes["ppo"].ratio[0]
    assert f.positive.zero_region[1] == pytest.approx(1.2, abs=tolerance)
    assert f.negative.zero_region[0] == pytest.approx(0.8, abs=tolerance)
    sentences = f.describe()
    assert sentences[0].startswith("no rollback") and sentences[1].startswith("hard clip")
    assert sentences[2].startswith("symmetric")


def dpo_rollback_ratio(advantage: float, beta: float = 0.6) -> float:
    """Where DPO's dJ/dr = A - (A / r) tanh^2(A log r / beta) turns positive below r = 1."""
    lo, hi = 1e-3, 1.0 - 1e-9
    for _ in range(100):  # bisection: positive below the root, negative above
        mid = (lo + hi) / 2
        slope = advantage - advantage / mid * np.tanh(advantage * np.log(mid) / beta) ** 2
        lo, hi = (mid, hi) if slope > 0 else (lo, mid)
    return lo


def test_dpo_shows_rollback_cautious_optimism_and_asymmetry(features, landscapes):
    f, tolerance = features["dpo"], step(landscapes["dpo"].ratio)
    assert f.rollback and f.cautious_optimism and not f.hard_clip and not f.symmetric
    assert f.negative.pushback_ratio == pytest.approx(dpo_rollback_ratio(-1.0), abs=tolerance)
    assert f.negative.pushback_strength > 1.0 and f.negative.pushback_fraction > 0.2
    assert f.positive.pushback_fraction == 0.0  # optimism never turns into a pull-back
    assert 0.5 < f.positive.beyond_clip < 0.95 and 0.3 < f.positive.damping < 0.8
    assert f.positive.sharpest_drop < 0.1 and f.positive.stop_ratio is None
    assert f.asymmetry > 0.3
    sentences = f.describe()
    assert sentences[0].startswith("rollback:") and "0.55" in sentences[0]
    assert sentences[1].startswith("cautious optimism:") and sentences[2].startswith("asymmetric")


def test_zero_drift_has_neither_feature(features, landscapes):
    f = features["zero"]
    assert (
        not (f.rollback or f.cautious_optimism or f.hard_clip)
        and f.symmetric
        and f.asymmetry == 0.0
    )
    for side in (f.positive, f.negative):
        assert side.beyond_clip == pytest.approx(1.0) and side.damping == pytest.approx(0.0)
        assert side.stop_ratio is None
        assert side.zero_region == (landscapes["zero"].ratio[0], landscapes["zero"].ratio[-1])
    assert f.describe()[1].startswith("no caution")


def test_a_steep_smooth_penalty_pulls_back_on_both_sides_symmetrically_without_a_cut():
    ratio, advantage = (axis.astype(np.float64) for axis in landscape_axes())
    r, a = np.meshgrid(ratio, advantage)
    quadratic = Landscape(
        ratio, advantage, 2.0 * (r - 1.0) ** 2, a - 4.0 * (r - 1.0)
    )  # D = 2 (r - 1)^2
    f = detect_features(quadratic)
    assert f.rollback and f.symmetric and not f.hard_clip and not f.cautious_optimism
    assert f.negative.pushback_ratio == pytest.approx(
        0.75, abs=step(ratio)
    )  # A - 4 (r - 1) > 0 below r = 0.75
    assert f.positive.pushback_ratio == pytest.approx(1.25, abs=step(ratio))
    sentences = f.describe()
    assert sentences[1].startswith("no optimism") and sentences[2].startswith(
        "pull-back: for A > 0"
    )
    assert f.positive.zero_region is None or f.positive.zero_region[1] < 1.02


def test_nan_cells_are_left_out_and_counted(landscapes, tmp_path):
    dpo = landscapes["dpo"]
    slope, drift = dpo.d_objective_dr.copy(), dpo.drift.copy()
    slope[:, -5:] = np.nan  # a candidate that blows up at the largest ratios
    drift[:, -5:] = np.nan
    f = detect_features(Landscape(dpo.ratio, dpo.advantage, drift, slope))
    assert f.rollback and f.cautious_optimism and f.nonfinite_cells == 2 * 5 * 81
    assert "NaN or infinite" in f.describe()[-1]
    path = save_drift_plot(Landscape(dpo.ratio, dpo.advantage, drift, slope), tmp_path / "nan.png")
    assert path.read_bytes().startswith(PNG_MAGIC)


# -- the reader of untrusted landscape files ----------------------------------------------


def valid_arrays() -> dict[str, np.ndarray]:
    ratio, advantage = landscape_axes()
    grid = np.zeros((advantage.size, ratio.size), np.float32)
    return {
        "ratio": ratio,
        "advantage": advantage,
        "drift": grid,
        "d_objective_dr": grid + advantage[:, None],
    }


def test_a_well_formed_file_reads_back_with_inf_as_nan(tmp_path):
    arrays = valid_arrays()
    arrays["drift"] = arrays["drift"].astype(np.float64)
    arrays["drift"][0, 0] = np.inf
    np.savez(tmp_path / "ok.npz", **arrays)
    landscape = read_landscape(tmp_path / "ok.npz")
    assert np.isnan(landscape.drift[0, 0]) and np.isfinite(landscape.drift[1:]).all()
    with pytest.raises(ValueError):
        landscape.drift[0, 0] = 1.0  # frozen: read-only arrays


BAD = {
    "a missing key": lambda a: a.pop("drift"),
    "an extra key": lambda a: a.update(extra=np.zeros(3, np.float32)),
    "integer values": lambda a: a.update(drift=a["drift"].astype(np.int32)),
    "complex values": lambda a: a.update(drift=a["drift"].astype(np.complex64)),
    "half precision": lambda a: a.update(d_objective_dr=a["d_objective_dr"].astype(np.float16)),
    "a transposed grid": lambda a: a.update(drift=a["drift"].T.copy()),
    "a different ratio axis": lambda a: a.update(ratio=a["ratio"] * 1.01),
    "a NaN in an axis": lambda a: a["advantage"].__setitem__(3, np.nan),
    "a short axis": lambda a: a.update(advantage=a["advantage"][:-1]),
    "objects (pickle)": lambda a: a.update(drift=np.array([{"x": 1}] * 3, dtype=object)),
}


@pytest.mark.parametrize("what", list(BAD))
def test_a_malformed_file_is_rejected(tmp_path, what):
    arrays = valid_arrays()
    BAD[what](arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(LandscapeError):
        read_landscape(tmp_path / "bad.npz")


def test_garbage_links_and_bombs_are_rejected(tmp_path):
    (tmp_path / "garbage.npz").write_bytes(b"not a zip at all" * 10)
    (tmp_path / "link.npz").symlink_to(tmp_path / "garbage.npz")
    arrays = valid_arrays()
    arrays["drift"] = np.zeros(
        (MAX_LANDSCAPE_BYTES // 4 + 1,), np.float32
    )  # compresses to almost nothing
    np.savez_compressed(tmp_path / "bomb.npz", **arrays)
    assert (tmp_path / "bomb.npz").stat().st_size < MAX_LANDSCAPE_BYTES // 100
    for name, message in (
        ("garbage", "not an npz"),
        ("link", "not a regular file"),
        ("bomb", "size limit"),
        ("missing", "no landscape"),
    ):
        with pytest.raises(LandscapeError, match=message):
            read_landscape(tmp_path / f"{name}.npz")


# -- what compute_landscape refuses -------------------------------------------------------


def test_only_drift_tasks_and_statically_clean_code_reach_the_sandbox():
    with pytest.raises(LandscapeError, match="drift tasks"):
        compute_landscape("value_loss", "def value_loss(x):\n    return x\n", sandbox="process")
    with pytest.raises(LandscapeError, match="static checks"):
        compute_landscape(
            "mirror_drift",
            "import os\n\ndef drift(ratio, advantage):\n    return ratio\n",
            sandbox="process",
        )


def test_a_candidate_that_breaks_in_the_sandbox_is_a_clear_error():
    source = (
        "def drift(ratio, advantage):\n"
        "    if ratio[0] > 1:\n        return ratio\n    return advantage\n"
    )
    with pytest.raises(LandscapeError, match="stage load: invalid"):
        compute_landscape("mirror_drift", source, sandbox="process")


def test_a_candidate_that_never_returns_is_killed_at_the_time_limit():
    source = (
        "x = 0\nwhile True:\n    x += 1\n\ndef drift(ratio, advantage):\n    return 0.0 * ratio\n"
    )
    with pytest.raises(LandscapeError, match="killed at its 8 s limit"):
        compute_landscape("mirror_drift", source, sandbox="process", seconds=8.0)


# -- the command line ---------------------------------------------------------------------


def plot(*args):
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, "-m", "scientist.cli", "plot", "drift", *args, "--sandbox", "process"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000


def test_cli_plots_a_candidate_file(tmp_path):
    png = tmp_path / "figures" / "ppo.png"
    result = plot(str(BASELINES / "ppo.py"), "--out", str(png), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["features"]["hard_clip"] is True and data["features"]["rollback"] is False
    assert data["png"] == str(png) and data["sentences"][1].startswith("hard clip")
    assert_png(png)


def test_cli_plots_an_archive_candidate(tmp_path):
    from archive import writes
    from archive.db import open_engine, transaction
    from archive.schema import Campaign

    url = f"sqlite:///{tmp_path}/archive.db"
    with transaction(open_engine(url)) as session:
        campaign = Campaign(
            name="c", task="mirror_drift", budget="smoke", proposer="mutation", config={}
        )
        session.add(campaign)
        session.flush()
        candidate = writes.add_candidate(
            session,
            campaign,
            code=(BASELINES / "dpo.py").read_text(),
            origin="baseline",
            operator="baseline",
            island=0,
            generation=0,
        )
        candidate_id = candidate.id
    png = tmp_path / "dpo.png"
    result = plot(str(candidate_id), "--out", str(png), "--db", url)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("rollback:") and "cautious optimism:" in result.stdout
    assert_png(png)
    missing = plot("999", "--out", str(tmp_path / "none.png"), "--db", url)
    assert missing.returncode == 2 and "no candidate 999" in missing.stderr
