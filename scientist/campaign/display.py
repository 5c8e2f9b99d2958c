"""Terminal views of campaigns and candidates (rich)."""

from rich.console import Group
from rich.table import Table
from rich.text import Text

from archive.schema import Campaign, Candidate
from sandbox.vocabulary import CampaignStatus, Origin, Review
from scientist.campaign.loop import Progress
from scientist.search.paired import Paired


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def versus_ppo(c: Candidate, paired: dict[int, list[Paired]]) -> str:
    """The paired difference from PPO with what it earned: "+0.12 beats" only after
    re-evaluation with an interval above zero; "held" while waiting for re-evaluation."""
    if c.review == Review.HELD:
        return "held"
    found = next((p for p in paired.get(c.id, []) if p.baseline == "ppo"), None)
    if found is None:
        return ""
    return f"{found.difference.point:+.2f}" + (" beats" if found.beats else "")


def leaderboard_table(
    rows: list[Candidate], title: str = "leaderboard", paired: dict[int, list[Paired]] | None = None
) -> Table:
    """Fits 80 columns; `scientist archive show ID` has the rest. `paired`
    (scientist.search.paired.versus_baselines) adds each candidate's difference from PPO."""
    table = Table(title=title, title_justify="left")
    for name in ("id", "fitness", "seeds", "vs PPO", "test", "g/i"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("how", no_wrap=True)
    table.add_column("note", no_wrap=True)
    for c in rows:
        how = (
            Origin.BASELINE
            if c.origin == Origin.BASELINE
            else c.operator
            if c.origin == Origin.MUTATION
            else f"{c.origin}:{c.operator}"
        )
        table.add_row(
            str(c.id),
            fmt(c.fitness),
            str(c.seeds or ""),
            versus_ppo(c, paired or {}),
            fmt(c.meta_test_fitness),
            f"{c.generation}/{c.island}",
            clip(how, 10),
            clip(c.baseline_name or c.proposal_note or "", 14),
        )
    return table


def batches(p: Progress) -> str:
    return f"in flight {p.in_flight} in {p.batches} batch{'es' if p.batches != 1 else ''}" + (
        f", {p.gathering} gathering" if p.gathering else ""
    )


def evaluated(p: Progress) -> str:
    return f"evaluated {p.evaluated}" + (
        f" · re-evaluated {p.reevaluated}" if p.reevaluated else ""
    )


def progress_line(p: Progress) -> str:
    """One line per event, for a log file or a pipe (no terminal to redraw)."""
    best = f" · best #{p.best_id} {p.best_fitness:.3f}" if p.best_id is not None else ""
    return f"g{p.generation} proposed {p.proposed} · {evaluated(p)} · {batches(p)}{best} · {p.last}"


def progress_view(p: Progress) -> Group:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(p.counts.items())) or "nothing yet"
    best = (
        f"#{p.best_id} fitness {p.best_fitness:.3f}" if p.best_id is not None else "none scored yet"
    )
    lines = [
        Text.assemble(("campaign ", "bold"), p.name, f"   generation {p.generation}"),
        Text(
            f"proposed {p.proposed} this run · {evaluated(p)} · {batches(p)} · "
            f"planned {p.planned} · spent ${p.spent_usd:.4f}"
        ),
        Text(f"archive: {counts}"),
        Text(f"best: {best}"),
        Text(p.last, style="dim"),
    ]
    return Group(*lines)


def campaign_summary(
    campaign: Campaign, counts: dict[str, int], spent: float, alive: bool
) -> Table:
    table = Table(show_header=False, title=f"campaign {campaign.name}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    config = campaign.config
    state = campaign.status + (
        " (runner alive)"
        if alive
        else " (no runner: `scientist resume` continues it)"
        if campaign.status == CampaignStatus.RUNNING
        else ""
    )
    planned = config["generations"] * config["islands"] * config["population"]
    for key, value in (
        ("status", state + (f" — {campaign.message}" if campaign.message else "")),
        ("task / budget", f"{campaign.task} / {campaign.budget}"),
        (
            "proposer",
            campaign.proposer
            + (f" ({', '.join(config.get('models') or [])})" if config.get("models") else ""),
        ),
        (
            "plan",
            f"{config['generations']} generations × {config['islands']} islands × "
            f"{config['population']} = {planned} proposals, {config['workers']} workers × "
            f"batches of {config.get('batch', 1)}",
        ),
        ("candidates", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"),
        (
            "spent",
            f"${spent:.4f}"
            + (f" of ${config['max_cost']}" if config.get("max_cost") is not None else ""),
        ),
        (CampaignStatus.CREATED, f"{campaign.created_at:%Y-%m-%d %H:%M:%S} UTC"),
    ):
        table.add_row(key, value)
    return table
