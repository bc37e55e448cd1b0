"""The benchmark's targets are judged only at the tree size they are set for."""

from __future__ import annotations

from benchmarks.measure import Row
from benchmarks.report import ratios, targets

HEADING = (
    "Local no-change re-run: at least 3x faster than stock (for the 5,000-file tree)."
)


def rows() -> list[Row]:
    """A local no-change run where ours is only 2x faster than stock."""
    found = [
        Row("local no-change", "stock", "-", wall_s=1.0, command_s=0.8, check="ok"),
        Row("local no-change", "ours", "serial", wall_s=0.5, command_s=0.2, check="ok"),
    ]
    for row in found:
        row.rss_mb = 40.0
        row.copied = 0
    ratios(found)
    return found


def test_a_target_is_judged_on_the_tree_it_is_set_for() -> None:
    assert targets(rows(), changed_files=50, files=5000) == [
        HEADING,
        "",
        "- serial: FAIL (check ok, speedup 2.0x; the command alone, start-up "
        "excluded: 4.0x)",
        "",
        "Files copied by ours (expected: 0 on no-change, 50 on 1% changed, 0 on "
        "fresh checkout): as expected",
    ]


def test_a_smaller_tree_shows_the_figures_without_judging_them() -> None:
    assert targets(rows(), changed_files=3, files=300) == [
        "This tree has 300 files; the targets are set for 5,000 (start-up and "
        "round trips per file weigh differently in another size), so their "
        "figures are shown and not judged.",
        "",
        HEADING,
        "",
        "- serial: not judged at this size (check ok, speedup 2.0x; the command "
        "alone, start-up excluded: 4.0x)",
        "",
        "Files copied by ours (expected: 0 on no-change, 3 on 1% changed, 0 on "
        "fresh checkout): as expected",
    ]
