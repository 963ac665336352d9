"""The paper's findings, checked on a run's own figures: a table of each finding, the measured numbers and
whether it holds. Nothing is tuned toward the paper: every check reads the figure tables as they are.

The findings (Klomp et al., Safe Fakes, Sec. IV and Fig. 4 / Fig. 6, DSFD) and the issue's demo targets:

- original mAP 91.0 and DeepPrivacy 88.3: GAN face replacement costs a few points at most;
- the conventional methods collapse: black-out at most half of original's mAP, blur and pixelation at
  least 0.1 below it;
- at least one GAN scores above every per-face conventional method (blur, pixelation, black-out);
- full-image blur does well on hard faces (its hard AP is above the per-face conventional methods');
- the gap grows with training iterations (original minus the anonymized methods' mean mAP);
- DeepPrivacy's Table 1 (detectability): the best GAN keeps at least half of original's easy AP on
  anonymized images, black-out under a tenth.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from safefakes.common.errors import SafefakesError
from safefakes.common.io import atomic_write_text

#: Per-face conventional methods of Fig. 4 (full-image blur is not per-face).
PER_FACE_CONVENTIONAL = ("blur", "pixelate", "blackout")
GAN_METHODS = ("deepprivacy", "ciagan", "sun2018")
#: Safe Fakes Fig. 4 (DSFD, 60k iterations): mAP of original data and of DeepPrivacy's.
PAPER_ORIGINAL_MAP = 0.910
PAPER_DEEPPRIVACY_MAP = 0.883
#: Issue thresholds for the demo's miniature of the finding.
BLACKOUT_MAX_SHARE = 0.5
CONVENTIONAL_MIN_DROP = 0.1
DETECTABLE_GAN_MIN_SHARE = 0.5
DETECTABLE_BLACKOUT_MAX_SHARE = 0.1


@dataclass(frozen=True)
class Finding:
    """One checked finding: what the paper says, what was measured, and whether it holds here."""

    finding: str
    paper: str
    measured: str
    holds: bool | None  # None: the run lacks the methods the check needs


def _map(table: pd.DataFrame, method: str) -> float:
    return float(table.loc[method, "mAP"])


def _present(table: pd.DataFrame, methods: tuple[str, ...]) -> list[str]:
    return [method for method in methods if method in table.index]


def fig4_findings(fig4: pd.DataFrame) -> list[Finding]:
    """The Fig. 4 findings from a ``fig4_{detector}.csv`` table."""
    table = fig4.set_index("method")
    if "original" not in table.index:
        raise SafefakesError("Fig. 4 table has no 'original' row: the findings compare against it")
    original = _map(table, "original")
    findings = []
    if "deepprivacy" in table.index:
        gap = original - _map(table, "deepprivacy")
        findings.append(
            Finding(
                "DeepPrivacy costs little (within 5 mAP points of original)",
                f"original {PAPER_ORIGINAL_MAP * 100:.1f}, DeepPrivacy {PAPER_DEEPPRIVACY_MAP * 100:.1f}",
                f"original {original * 100:.1f}, DeepPrivacy {_map(table, 'deepprivacy') * 100:.1f}",
                gap <= 0.05,
            )
        )
    if "blackout" in table.index:
        share = _map(table, "blackout") / original if original > 0 else float("nan")
        findings.append(
            Finding(
                f"black-out keeps at most {BLACKOUT_MAX_SHARE:.0%} of original's mAP",
                "conventional methods collapse",
                f"black-out {_map(table, 'blackout') * 100:.1f} ({share:.0%} of original)",
                share <= BLACKOUT_MAX_SHARE,
            )
        )
    for method in _present(table, ("blur", "pixelate")):
        drop = original - _map(table, method)
        findings.append(
            Finding(
                f"{method} is at least {CONVENTIONAL_MIN_DROP * 100:.0f} mAP points below original",
                "conventional methods collapse",
                f"{method} {_map(table, method) * 100:.1f} ({abs(drop) * 100:.1f} {'below' if drop >= 0 else 'above'} original)",
                drop >= CONVENTIONAL_MIN_DROP,
            )
        )
    gans, conventional = _present(table, GAN_METHODS), _present(table, PER_FACE_CONVENTIONAL)
    if gans and conventional:
        best_gan = max(gans, key=lambda m: _map(table, m))
        best_conventional = max(conventional, key=lambda m: _map(table, m))
        findings.append(
            Finding(
                "a GAN scores above every per-face conventional method",
                "DeepPrivacy above blur, pixelation, black-out",
                f"best GAN {best_gan} {_map(table, best_gan) * 100:.1f}, best conventional {best_conventional} {_map(table, best_conventional) * 100:.1f}",
                _map(table, best_gan) > _map(table, best_conventional),
            )
        )
    if "fullblur" in table.index and conventional:
        others = max(float(table.loc[m, "hard"]) for m in conventional)
        findings.append(
            Finding(
                "full-image blur does well on hard faces (hard AP above the per-face conventional methods')",
                "FullBlur keeps hard-face AP",
                f"fullblur hard {float(table.loc['fullblur', 'hard']) * 100:.1f}, best per-face conventional hard {others * 100:.1f}",
                float(table.loc["fullblur", "hard"]) > others,
            )
        )
    return findings


def fig6_findings(fig6: pd.DataFrame) -> list[Finding]:
    """Whether the gap between original and the anonymized methods grows with detector training iterations."""
    points = sorted(fig6["iterations"].unique())
    if len(points) < 2 or "original" not in set(fig6["method"]):
        return [Finding("the gap grows with training iterations", "Fig. 6: larger gap at 60k than 7.5k", "fewer than 2 points", None)]
    gaps = []
    for iterations in (points[0], points[-1]):
        rows = fig6[fig6["iterations"] == iterations].set_index("method")
        anonymized = rows.drop(index="original")["mAP"]
        gaps.append(float(rows.loc["original", "mAP"] - anonymized.mean()))
    return [
        Finding(
            "the gap grows with training iterations (original minus the anonymized methods' mean mAP)",
            "Fig. 6: the gap widens from 7.5k to 60k iterations",
            f"{gaps[0] * 100:+.1f} at {points[0]}, {gaps[1] * 100:+.1f} at {points[-1]}",
            gaps[1] > gaps[0],
        )
    ]


def detectability_findings(detectability: pd.DataFrame) -> list[Finding]:
    """DeepPrivacy's Table 1 targets from a ``detectability_{detector}.csv`` table."""
    table = detectability.set_index("method")
    if "original" not in table.index:
        raise SafefakesError("detectability table needs an 'original' row")
    if float(table.loc["original", "easy"]) <= 0:
        return [Finding("detectability (shares of original's easy AP)", "DeepPrivacy Table 1", "original easy AP is 0: no shares", None)]
    share: Callable[[str], float] = lambda method: float(table.loc[method, "easy"]) / float(table.loc["original", "easy"])  # noqa: E731
    findings = []
    gans = _present(table, GAN_METHODS)
    if gans:
        best = max(gans, key=share)
        findings.append(
            Finding(
                f"the best GAN's faces stay detectable (at least {DETECTABLE_GAN_MIN_SHARE:.0%} of original's easy AP)",
                "DeepPrivacy Table 1: AP 0.889 of 0.909 for its anonymized faces",
                f"{best} keeps {share(best):.0%}",
                share(best) >= DETECTABLE_GAN_MIN_SHARE,
            )
        )
    if "blackout" in table.index:
        findings.append(
            Finding(
                f"blacked-out faces are not detected (under {DETECTABLE_BLACKOUT_MAX_SHARE:.0%} of original's easy AP)",
                "",
                f"black-out keeps {share('blackout'):.0%}",
                share("blackout") < DETECTABLE_BLACKOUT_MAX_SHARE,
            )
        )
    return findings


def findings_table(findings: list[Finding]) -> pd.DataFrame:
    """The findings as a table with a 'holds' column of yes / no / n/a."""
    return pd.DataFrame(
        [{"finding": f.finding, "paper": f.paper, "measured": f.measured, "holds": {True: "yes", False: "no", None: "n/a"}[f.holds]} for f in findings]
    )


def write_paper_checks(
    fig4_csv: str | os.PathLike[str],
    fig6_csv: str | os.PathLike[str],
    detectability_csv: str | os.PathLike[str] | None,
    out_csv: str | os.PathLike[str],
    out_md: str | os.PathLike[str],
    detector: str,
) -> pd.DataFrame:
    """Check every finding on a run's tables and write them as CSV and as a Markdown table."""
    findings = fig4_findings(pd.read_csv(fig4_csv)) + fig6_findings(pd.read_csv(fig6_csv))
    if detectability_csv is not None:
        findings += detectability_findings(pd.read_csv(detectability_csv))
    table = findings_table(findings)
    atomic_write_text(out_csv, table.to_csv(index=False))
    lines = [f"Paper findings checked on this run ({detector})", "", "| finding | paper | measured | holds |", "|---|---|---|---|"]
    lines += [f"| {row.finding} | {row.paper} | {row.measured} | {row.holds} |" for row in table.itertuples()]
    atomic_write_text(out_md, "\n".join(lines) + "\n")
    return table
