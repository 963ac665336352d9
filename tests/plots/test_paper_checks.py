"""The paper's findings checked on figure tables: each check says yes when the numbers show it and no when not."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from safefakes.common.errors import SafefakesError
from safefakes.plots.paper_checks import detectability_findings, fig4_findings, fig6_findings, write_paper_checks


def _fig4(maps: dict[str, tuple[float, float, float]], iterations: int = 100) -> pd.DataFrame:
    rows = [{"method": m, "iterations": iterations, "easy": e, "medium": md, "hard": h, "mAP": (e + md + h) / 3} for m, (e, md, h) in maps.items()]
    return pd.DataFrame(rows)


PAPER_LIKE = {
    "original": (0.9, 0.8, 0.6),
    "blur": (0.5, 0.4, 0.3),
    "fullblur": (0.6, 0.6, 0.5),
    "pixelate": (0.4, 0.3, 0.2),
    "blackout": (0.2, 0.1, 0.1),
    "deepprivacy": (0.88, 0.78, 0.58),
}


def _holds(findings) -> dict[str, bool | None]:
    return {finding.finding.split(" (")[0]: finding.holds for finding in findings}


def test_paper_like_numbers_hold_every_fig4_finding() -> None:
    findings = fig4_findings(_fig4(PAPER_LIKE))
    assert len(findings) == 6
    assert all(finding.holds for finding in findings), [f for f in findings if not f.holds]


def test_numbers_against_the_paper_fail_its_findings() -> None:
    reversed_study = dict(PAPER_LIKE, blackout=(0.85, 0.75, 0.55), deepprivacy=(0.1, 0.1, 0.1), fullblur=(0.1, 0.1, 0.05))
    holds = _holds(fig4_findings(_fig4(reversed_study)))
    assert holds["DeepPrivacy costs little"] is False
    assert holds["black-out keeps at most 50% of original's mAP"] is False
    assert holds["a GAN scores above every per-face conventional method"] is False
    assert holds["full-image blur does well on hard faces"] is False
    assert holds["blur is at least 10 mAP points below original"] is True


def test_gap_growth_reads_the_first_and_last_iteration_points() -> None:
    early = _fig4({"original": (0.5, 0.4, 0.3), "blur": (0.45, 0.35, 0.25)}, iterations=10)
    late = _fig4({"original": (0.9, 0.8, 0.6), "blur": (0.5, 0.4, 0.3)}, iterations=20)
    (growing,) = fig6_findings(pd.concat([early, late]))
    assert growing.holds is True and "+5.0 at 10" in growing.measured
    (shrinking,) = fig6_findings(pd.concat([late.assign(iterations=10), early.assign(iterations=20)]))
    assert shrinking.holds is False
    (single,) = fig6_findings(late)
    assert single.holds is None


def test_detectability_shares_of_original_easy_ap(tmp_path: Path) -> None:
    table = _fig4({"original": (0.8, 0.7, 0.5), "blackout": (0.05, 0.04, 0.03), "sun2018": (0.5, 0.4, 0.2), "deepprivacy": (0.3, 0.2, 0.1)})
    gan, blackout = detectability_findings(table)
    assert gan.holds is True and "sun2018 keeps 62%" in gan.measured
    assert blackout.holds is True and "6%" in blackout.measured
    weak = table.assign(easy=[0.8, 0.2, 0.3, 0.2])
    assert [f.holds for f in detectability_findings(weak)] == [False, False]
    with pytest.raises(SafefakesError):
        detectability_findings(table[table["method"] != "original"])
    (untrained,) = detectability_findings(table.assign(easy=0.0))
    assert untrained.holds is None

    fig4, fig6, detect = tmp_path / "fig4.csv", tmp_path / "fig6.csv", tmp_path / "detectability.csv"
    _fig4(PAPER_LIKE).to_csv(fig4, index=False)
    pd.concat([_fig4(PAPER_LIKE, 10), _fig4(PAPER_LIKE, 100)]).to_csv(fig6, index=False)
    table.to_csv(detect, index=False)
    written = write_paper_checks(fig4, fig6, detect, tmp_path / "checks.csv", tmp_path / "checks.md", "tinaface")
    assert list(written["holds"]).count("yes") == 8 and list(written["holds"]).count("no") == 1  # equal gaps do not grow
    assert (tmp_path / "checks.md").read_text().count("\n| ") == 10
