"""The quality score: evidence, points, recommendations; unknown is never full marks."""

from __future__ import annotations

import json
import time
from pathlib import Path

from session_buddy.core.project import analyze_project
from session_buddy.core.quality import SessionActivity, compute_quality
from tests.test_project import commit_all, make_repo


def _by_key(score):  # type: ignore[no-untyped-def]
    return {c.key: c for c in score.components}


def test_every_component_has_evidence_points_and_a_recommendation(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    (repo / "a.py").write_text("x = 1\n")
    commit_all(repo)
    score = compute_quality(
        analyze_project(repo),
        SessionActivity(messages=3, reflections=2, seconds_since_checkpoint=60),
    )
    assert score.score is not None and 0 <= score.score <= 100
    for c in score.components:
        assert c.evidence and c.recommendation
        assert c.category in ("project", "git", "session")
        if c.points is not None:
            assert 0 <= c.points <= c.max_points
    assert sum(c.max_points for c in score.components) == 100
    data = score.to_dict()
    assert data["breakdown"] and "recommendations" in data


def test_unknown_is_left_out_of_the_denominator(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    (repo / "a.py").write_text("x = 1\n")
    commit_all(repo)
    info = analyze_project(repo)
    score = compute_quality(info, None)
    comps = _by_key(score)
    # no test run recorded, no manifest, no session: unknown, not full marks
    for key in ("test_result", "lockfile", "conversation", "reflections", "checkpoint_age"):
        assert comps[key].status == "unknown" and comps[key].points is None
    unknown_max = sum(c.max_points for c in score.components if c.points is None)
    assert score.possible == 100 - unknown_max
    assert score.score == round(100 * score.earned / score.possible)


def test_failing_tests_and_dirty_tree_cost_points(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_a.py").write_text("def test_a(): pass\n")
    commit_all(repo)
    cache = repo / ".pytest_cache" / "v" / "cache"
    cache.mkdir(parents=True)
    (repo / ".pytest_cache" / ".gitignore").write_text("*\n")  # as pytest writes it
    (cache / "nodeids").write_text(json.dumps(["t::a", "t::b", "t::c"]))
    (cache / "lastfailed").write_text(json.dumps({"t::a": True, "t::b": True}))
    for i in range(8):
        (repo / f"new{i}.txt").write_text("x")
    (repo / "tests" / "test_a.py").write_text("def test_a(): assert 0\n")
    comps = _by_key(compute_quality(analyze_project(repo), None, now=time.time()))
    assert comps["test_result"].points == 0 and "2 of 3 failed" in comps["test_result"].evidence
    assert "failing" in comps["test_result"].recommendation
    assert comps["uncommitted"].points == 7
    assert comps["untracked"].points == 1 and "8 untracked" in comps["untracked"].evidence
    assert comps["tests"].points == 10


def test_passing_tests_earn_full_marks(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "p")
    (repo / "a.py").write_text("x = 1\n")
    commit_all(repo)
    cache = repo / ".pytest_cache" / "v" / "cache"
    cache.mkdir(parents=True)
    (cache / "nodeids").write_text(json.dumps(["t::a"]))
    comps = _by_key(compute_quality(analyze_project(repo), None))
    assert comps["test_result"].points == 10 and comps["test_result"].status == "ok"


def test_session_components() -> None:
    comps = _by_key(
        compute_quality(
            None,
            SessionActivity(
                messages=0, reflections=1, seconds_since_checkpoint=4000, checkpoints=1
            ),
        )
    )
    assert comps["conversation"].points == 0
    assert comps["reflections"].points == 6
    assert comps["checkpoint_age"].points == 4
    # project not analysed: project and git components unknown
    assert comps["tests"].points is None and comps["repo_state"].points is None


def test_not_a_repository_is_known_not_unknown(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    comps = _by_key(compute_quality(analyze_project(folder), None))
    assert comps["repo_state"].points == 0 and "git init" in comps["repo_state"].recommendation
    assert comps["uncommitted"].points is None
