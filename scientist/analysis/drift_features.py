"""What a drift does to policy updates, read off its landscape (pure numpy).

The policy objective per sample is J(r, A) = r*A - D(r, A); its ratio derivative
g = dJ/dr = A - dD/dr says which way the update moves the ratio r = pi/pi_old. Without a
drift g = A. Everything here is in units of that unconstrained incentive, u = g / A:
u = 1 is plain r*A, u = 0 no push at all, u < 0 a push back towards r = 1.

For each sign of A the "improving direction" is the one r*A rewards: r > 1 for A > 0,
r < 1 for A < 0. The features, after the Discovered Policy Optimisation paper (section 6):

- rollback (A < 0): going down from r = 1, the objective turns round and pushes r back
  up towards 1 (g > 0 in the r < 1, A < 0 quadrant), so poor-looking actions keep some
  probability. DPO does; PPO only stops pushing (g = 0 below 1 - eps); no drift never stops.
- cautious optimism (A > 0): beyond PPO's clip edge 1 + eps the objective still rewards
  raising r (optimism, where PPO gives nothing), but the reward fades gradually as r grows
  (caution, which no drift lacks), with no hard cut (which is PPO's clip).
- asymmetry: PPO and no drift treat the two improving directions alike: raising r by d
  for A is answered as lowering it by d for -A, g(1 + d, A) = -g(1 - d, -A) (PPO's clip
  is symmetric in r - 1, not in log r). The metric is
  sum |g(1 + d, A) + g(1 - d, -A)| / sum (|g(1 + d, A)| + |g(1 - d, -A)|) over the grid's
  A > 0 and r = 1 + d > 1 whose mirror 1 - d lies on the grid (interpolated along r):
  0 for that symmetry, 1 when the two sides share nothing. Only the improving quadrants
  count, where the paper's "update asymmetry" lives; elsewhere most drifts leave g = A.
- drift-free region: the interval around r = 1 where D is zero for every A of one sign,
  PPO's trust region [1 - eps, 1 + eps] on the improving side.

NaN cells (from non-finite values) are left out everywhere.
"""

from dataclasses import asdict, dataclass

import numpy as np

from sandbox.landscape import Landscape

CLIP_EPSILON = 0.2  # PPO's, the reference the sentences compare with
TOLERANCE = 0.02  # |u| below this counts as no push
ZERO_DRIFT = 1e-4  # |D| below this counts as zero (float32 noise is about 1e-7)
MIN_ADVANTAGE = 0.25  # averages of u leave out smaller |A|, where dividing by A amplifies noise
HARD_DROP = 0.5  # u falling by this much within one grid step is a hard cut, like PPO's clip
MIN_FRACTION = 0.01  # rollback must cover this share of its quadrant
MIN_EFFECT = 0.1  # optimism / caution: mean u beyond the clip edge / mean damping at the grid's end
SYMMETRIC_BELOW = 0.1


@dataclass(frozen=True)
class SideFeatures:
    """The update for one sign of A (sign = +1: A > 0, r pushed up; -1: A < 0, r pushed
    down). Ratios "at |A| = 1" are the first grid ratio, going away from 1 in the improving
    direction, where the condition holds on the A = +-1 slice; None where it never does."""

    sign: int
    stop_ratio: float | None  # u <= TOLERANCE: the incentive to go further is gone
    half_ratio: float | None  # u <= 0.5
    pushback_ratio: float | None  # u < -TOLERANCE: the objective pushes r back towards 1
    pushback_strength: float  # the largest -u on the |A| = 1 slice (0 if none)
    pushback_fraction: (
        float  # share of the quadrant's cells (all A of this sign) with u < -TOLERANCE
    )
    beyond_clip: float  # mean u where |r - 1| > CLIP_EPSILON (PPO 0, no drift 1)
    damping: float  # mean 1 - u at the last finite ratio of each slice (PPO 1, no drift 0)
    # the largest fall of u within one grid step, less the steps beside it (PPO 1: a hard clip)
    sharpest_drop: float
    sharpest_drop_ratio: float | None  # the ratio just after that fall
    zero_region: (
        tuple[float, float] | None
    )  # [lo, hi] around 1 with |D| <= ZERO_DRIFT for every A of this sign


@dataclass(frozen=True)
class DriftFeatures:
    positive: SideFeatures
    negative: SideFeatures
    rollback: bool
    cautious_optimism: bool
    hard_clip: bool  # on the A > 0 side
    asymmetry: float
    symmetric: bool
    ratio_range: tuple[float, float]
    nonfinite_cells: int
    cells: int

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> list[str]:
        """Plain sentences, one per feature."""
        return [
            _rollback_sentence(self),
            _optimism_sentence(self),
            *_overshoot_sentence(self),
            _symmetry_sentence(self),
            _zero_sentence(self),
            *_nonfinite_sentence(self),
        ]


def detect_features(landscape: Landscape) -> DriftFeatures:
    positive, negative = _side(landscape, +1), _side(landscape, -1)
    asymmetry = _asymmetry(landscape)
    optimistic = positive.beyond_clip >= MIN_EFFECT
    cautious = positive.damping >= MIN_EFFECT
    hard_clip = positive.sharpest_drop >= HARD_DROP
    g = landscape.d_objective_dr
    return DriftFeatures(
        positive=positive,
        negative=negative,
        rollback=negative.pushback_fraction >= MIN_FRACTION,
        cautious_optimism=optimistic and cautious and not hard_clip,
        hard_clip=hard_clip,
        asymmetry=asymmetry,
        symmetric=asymmetry < SYMMETRIC_BELOW,
        ratio_range=(float(landscape.ratio[0]), float(landscape.ratio[-1])),
        nonfinite_cells=int(np.isnan(g).sum() + np.isnan(landscape.drift).sum()),
        cells=int(g.size + landscape.drift.size),
    )


# -- measurements -------------------------------------------------------------------------


def _side(landscape: Landscape, sign: int) -> SideFeatures:
    r, a, g = landscape.ratio, landscape.advantage, landscape.d_objective_dr
    one = int(np.argmin(np.abs(r - 1.0)))
    # Columns from r = 1 outwards in the improving direction.
    cols = np.arange(one, r.size) if sign > 0 else np.arange(one, -1, -1)
    rows = np.flatnonzero(sign * a > 0)
    away = r[cols]
    u = g[np.ix_(rows, cols)] / a[rows, None]
    strong = u[np.abs(a[rows]) >= MIN_ADVANTAGE]
    reference = int(np.argmin(np.abs(a - sign)))
    u_ref = g[reference, cols] / a[reference]

    # A cut is a fall in one step beyond the falls of the steps beside it: a steep but smooth
    # decline falls as much in every step and is no cut.
    drops = strong[:, :-1] - strong[:, 1:]
    beside = np.pad(drops, ((0, 0), (1, 1)))
    jumps = drops - np.fmax(np.fmax(beside[:, :-2], beside[:, 2:]), 0.0)
    if np.isfinite(jumps).any():
        row, col = np.unravel_index(np.nanargmax(jumps), jumps.shape)
        sharpest, sharpest_at = float(jumps[row, col]), float(away[col + 1])
    else:
        sharpest, sharpest_at = 0.0, None
    if sharpest <= TOLERANCE:
        sharpest_at = None  # nothing falls: there is no "where"
    valid = ~np.isnan(u[:, 1:])
    beyond = strong[:, np.abs(away - 1.0) > CLIP_EPSILON]
    return SideFeatures(
        sign=sign,
        stop_ratio=_first(away, u_ref <= TOLERANCE),
        half_ratio=_first(away, u_ref <= 0.5),
        pushback_ratio=_first(away, u_ref < -TOLERANCE),
        pushback_strength=max(0.0, _nanmax(-u_ref, 0.0)),
        pushback_fraction=float((u[:, 1:] < -TOLERANCE).sum() / max(valid.sum(), 1)),
        beyond_clip=_nanmean(beyond, 0.0),
        damping=1.0 - _nanmean(_last_finite(strong), 1.0),
        sharpest_drop=sharpest,
        sharpest_drop_ratio=sharpest_at,
        zero_region=_zero_region(r, landscape.drift[rows], one),
    )


def _asymmetry(landscape: Landscape) -> float:
    r, a, g = landscape.ratio, landscape.advantage, landscape.d_objective_dr
    mirror = 2.0 - r
    inside = (r > 1.0) & (mirror >= r[0])
    total = difference = 0.0
    for i in np.flatnonzero(a > 0):
        j = int(np.argmin(np.abs(a + a[i])))
        if not np.isclose(a[j], -a[i]):
            continue
        mine, other = g[i, inside], np.interp(mirror[inside], r, g[j])
        ok = np.isfinite(mine) & np.isfinite(other)
        difference += float(np.abs(mine + other)[ok].sum())
        total += float((np.abs(mine) + np.abs(other))[ok].sum())
    return difference / total if total > 0 else 0.0


def _zero_region(r: np.ndarray, drift: np.ndarray, one: int) -> tuple[float, float] | None:
    zero = (np.abs(drift) <= ZERO_DRIFT).all(axis=0)  # NaN is not zero
    if not zero[one]:
        return None
    lo, hi = one, one
    while lo > 0 and zero[lo - 1]:
        lo -= 1
    while hi < r.size - 1 and zero[hi + 1]:
        hi += 1
    return float(r[lo]), float(r[hi])


def _first(ratios: np.ndarray, condition: np.ndarray) -> float | None:
    hits = np.flatnonzero(condition)
    return float(ratios[hits[0]]) if hits.size else None


def _last_finite(rows: np.ndarray) -> np.ndarray:
    """Each row's value farthest from r = 1 that is not NaN (NaN for an all-NaN row)."""
    finite = ~np.isnan(rows)
    last = rows.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)
    return np.where(finite.any(axis=1), rows[np.arange(rows.shape[0]), last], np.nan)


def _nanmean(x: np.ndarray, default: float) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else default


def _nanmax(x: np.ndarray, default: float) -> float:
    x = x[~np.isnan(x)]
    return float(x.max()) if x.size else default


# -- sentences ----------------------------------------------------------------------------


def _rollback_sentence(f: DriftFeatures) -> str:
    n = f.negative
    if f.rollback:
        where = (
            f"once r falls to {n.pushback_ratio:.2f} at A = -1 (up to {n.pushback_strength:.2f}|A|)"
            if n.pushback_ratio is not None
            else "at larger |A| than 1"
        )
        return (
            f"rollback: for A < 0 the objective pushes r back up towards 1 {where}, over "
            f"{n.pushback_fraction:.0%} of the A < 0, r < 1 quadrant "
            "(PPO: none, its push just stops at 0.8)"
        )
    if n.stop_ratio is None:
        return (
            f"no rollback: for A < 0 the objective keeps pushing r down across the grid "
            f"(to r = {f.ratio_range[0]:.2f})"
        )
    how = (
        "abruptly, a hard clip like PPO's at 0.8"
        if n.sharpest_drop >= HARD_DROP
        else "without reversing"
    )
    return (
        f"no rollback: for A < 0 the push to lower r stops at r = {n.stop_ratio:.2f} (A = -1), "
        f"{how}"
    )


def _optimism_sentence(f: DriftFeatures) -> str:
    p, edge = f.positive, f.ratio_range[1]
    if f.cautious_optimism:
        half = (
            f"; half of it is left at r = {p.half_ratio:.2f} for A = 1"
            if p.half_ratio is not None
            else ""
        )
        return (
            "cautious optimism: for A > 0 the objective still rewards raising r beyond "
            f"{1 + CLIP_EPSILON:.1f} ({p.beyond_clip:.0%} of the unconstrained incentive on "
            f"average, PPO: none) and damps it gradually ({p.damping:.0%} less at "
            f"r = {edge:.0f}{half})"
        )
    if f.hard_clip:
        return (
            f"hard clip: for A > 0 the incentive to raise r falls by {p.sharpest_drop:.0%} of A "
            f"within one grid step at r = {p.sharpest_drop_ratio:.2f} "
            f"(PPO: hard clip at {1 + CLIP_EPSILON:.1f})"
        )
    if p.damping < MIN_EFFECT:
        return (
            f"no caution: for A > 0 the incentive to raise r stays undamped up to r = {edge:.0f} "
            f"({p.damping:.0%} less at the edge; PPO cuts it at {1 + CLIP_EPSILON:.1f})"
        )
    fade = (
        f"is gone at r = {p.stop_ratio:.2f} for A = 1"
        if p.stop_ratio is not None
        else f"is {p.damping:.0%} smaller at r = {edge:.0f}"
    )
    left = (
        f", {p.beyond_clip:.0%} of it left beyond {1 + CLIP_EPSILON:.1f} on average"
        if p.beyond_clip >= 0
        else ""
    )
    return (
        f"no optimism: for A > 0 the incentive to raise r fades without a hard cut and {fade}{left}"
    )


def _overshoot_sentence(f: DriftFeatures) -> list[str]:
    p = f.positive
    if p.pushback_fraction < MIN_FRACTION:
        return []
    where = (
        f"once r reaches {p.pushback_ratio:.2f} at A = 1"
        if p.pushback_ratio is not None
        else "at larger A than 1"
    )
    return [
        f"pull-back: for A > 0 the objective pushes r back down towards 1 {where}, over "
        f"{p.pushback_fraction:.0%} of the A > 0, r > 1 quadrant"
    ]


def _symmetry_sentence(f: DriftFeatures) -> str:
    kind = "symmetric" if f.symmetric else "asymmetric"
    return (
        f"{kind} updates: asymmetry {f.asymmetry:.2f} between raising r for A > 0 and lowering it "
        "for A < 0 (0: dJ/dr(1 + d, A) = -dJ/dr(1 - d, -A) as for PPO and no drift; "
        "1: nothing in common)"
    )


def _zero_sentence(f: DriftFeatures) -> str:
    lo, hi = f.ratio_range

    def region(zero: tuple[float, float] | None) -> str:
        if zero is None:
            return "nowhere"
        if zero[0] == zero[1]:
            return "only r = 1"
        at_lo, at_hi = np.isclose(zero[0], lo), np.isclose(zero[1], hi)
        if at_lo and at_hi:
            return "the whole grid"
        if at_lo:
            return f"r <= {zero[1]:.2f}"
        return f"r >= {zero[0]:.2f}" if at_hi else f"{zero[0]:.2f} <= r <= {zero[1]:.2f}"

    return (
        f"drift-free region (|D| <= {ZERO_DRIFT:g} at every A of a sign): "
        f"{region(f.positive.zero_region)} for A > 0, {region(f.negative.zero_region)} for A < 0 "
        "(PPO: r <= 1.2 and r >= 0.8)"
    )


def _nonfinite_sentence(f: DriftFeatures) -> list[str]:
    if not f.nonfinite_cells:
        return []
    return [
        f"{f.nonfinite_cells} of {f.cells} landscape values are NaN or infinite and were left out"
    ]
