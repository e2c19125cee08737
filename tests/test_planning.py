"""The pure planner: data in, plan out. No files, no git, no database."""

from __future__ import annotations

from alembic_autocopy.core.model import (
    Candidate,
    Location,
    LocationKind,
    MigrationHeader,
    Outcome,
)
from alembic_autocopy.core.planning import matches_preference, plan_repair


def header(rev: str, *parents: str, depends_on: tuple[str, ...] = (),
           labels: tuple[str, ...] = ()) -> MigrationHeader:
    return MigrationHeader(rev, tuple(parents), labels, depends_on, f"message {rev}")


def found(h: MigrationHeader, where: str = "/wt/a", sha: str | None = None,
          kind: LocationKind = LocationKind.WORKTREE) -> Candidate:
    return Candidate(
        header=h, sha256=sha or f"sha-{h.revision}", size=10, filename=f"{h.revision}_x.py",
        location=Location(kind=kind, path=f"{where}/versions/{h.revision}_x.py", worktree=where),
    )


BASE = header("base")


def test_nothing_to_do_when_every_applied_id_is_known() -> None:
    plan = plan_repair([BASE, header("b1", "base")], ["b1"], [found(header("x", "base"))])
    assert plan.outcome is Outcome.NOTHING_TO_DO
    assert plan.bring == ()


def test_whole_chain_is_planned_parents_first() -> None:
    chain = [header("c1", "base"), header("c2", "c1"), header("c3", "c2")]
    plan = plan_repair([BASE], ["c3"], [found(h) for h in reversed(chain)])
    assert plan.outcome is Outcome.PLAN
    assert [c.revision for c in plan.bring] == ["c1", "c2", "c3"]
    assert plan.unknown_applied == ("c3",)


def test_merge_parents_and_depends_on_are_followed() -> None:
    candidates = [found(header("l", "base")), found(header("r", "base")),
                  found(header("other", labels=("reports",))),
                  found(header("m", "l", "r", depends_on=("reports",)))]
    plan = plan_repair([BASE], ["m"], candidates)
    assert {c.revision for c in plan.bring} == {"l", "r", "other", "m"}
    order = [c.revision for c in plan.bring]
    assert order.index("m") > max(order.index("l"), order.index("r"), order.index("other"))


def test_never_brings_in_an_id_this_worktree_has() -> None:
    mine = header("c1", "base")
    plan = plan_repair([BASE, mine], ["c2"],
                       [found(header("c1", "base"), sha="other"), found(header("c2", "c1"))])
    assert [c.revision for c in plan.bring] == ["c2"]


def test_missing_parent_is_unresolved_with_who_needs_it() -> None:
    plan = plan_repair([BASE], ["c2"], [found(header("c2", "c1"))])
    assert plan.outcome is Outcome.UNRESOLVED
    assert [(u.revision, u.needed_by) for u in plan.unresolved] == [("c1", ("c2",))]


def test_applied_id_found_nowhere_is_needed_by_the_database() -> None:
    plan = plan_repair([BASE], ["zz"], [])
    assert [(u.revision, u.needed_by) for u in plan.unresolved] == [("zz", ("database",))]


def test_identical_copies_are_one_candidate_and_the_closest_wins() -> None:
    h = header("c1", "base")
    remote = found(h, where="/repo", sha="same", kind=LocationKind.REMOTE)
    worktree = found(h, where="/wt/b", sha="same")
    plan = plan_repair([BASE], ["c1"], [remote, worktree])
    assert plan.outcome is Outcome.PLAN
    assert plan.bring[0].location.worktree == "/wt/b"
    assert plan.also_found["c1"] == (remote.location,)


def test_different_contents_conflict_until_preferred() -> None:
    h = header("c1", "base")
    one, two = found(h, where="/wt/a", sha="one"), found(h, where="/wt/b", sha="two")
    plan = plan_repair([BASE], ["c1"], [one, two])
    assert plan.outcome is Outcome.CONFLICT
    assert {c.sha256 for c in plan.conflicts[0].candidates} == {"one", "two"}
    preferred = plan_repair([BASE], ["c1"], [one, two], matches_preference(["/wt/b"]))
    assert preferred.outcome is Outcome.PLAN
    assert preferred.bring[0].sha256 == "two"


def test_preference_matching_both_contents_still_conflicts() -> None:
    h = header("c1", "base")
    one, two = found(h, where="/wt/a", sha="one"), found(h, where="/wt/ab", sha="two")
    plan = plan_repair([BASE], ["c1"], [one, two], matches_preference(["/wt/a", "/wt/ab"]))
    assert plan.outcome is Outcome.CONFLICT


def test_two_applied_heads_share_ancestors_once() -> None:
    candidates = [found(header("c1", "base")), found(header("x", "c1")),
                  found(header("y", "c1"))]
    plan = plan_repair([BASE], ["x", "y"], candidates)
    assert [c.revision for c in plan.bring].count("c1") == 1
    assert len(plan.bring) == 3


def test_the_file_on_disk_wins_over_older_versions_in_git_objects() -> None:
    h = header("c1", "base")
    edited = found(h, where="/wt/a", sha="edited")
    on_branch = found(h, where="/repo", sha="old", kind=LocationKind.BRANCH)
    on_tag = found(h, where="/repo", sha="older", kind=LocationKind.TAG)
    plan = plan_repair([BASE], ["c1"], [on_branch, edited, on_tag])
    assert plan.outcome is Outcome.PLAN
    assert plan.bring[0].sha256 == "edited"


def test_git_objects_that_disagree_without_a_file_conflict() -> None:
    h = header("c1", "base")
    one = found(h, where="/repo", sha="one", kind=LocationKind.BRANCH)
    two = found(h, where="/repo", sha="two", kind=LocationKind.REMOTE)
    assert plan_repair([BASE], ["c1"], [one, two]).outcome is Outcome.CONFLICT


def test_reachable_walks_parents_through_gaps() -> None:
    from alembic_autocopy.core.model import reachable

    parents = {"d": ["c", "x"], "c": ["b"], "b": ["a"], "x": ["gone"]}
    assert reachable(["d"], parents) == {"d", "c", "b", "a", "x", "gone"}
    assert reachable(["c", ""], parents) == {"c", "b", "a"}  # an empty head is no revision
    assert reachable([], parents) == set()
    assert reachable(["a", "a"], {"a": ["a"]}) == {"a"}  # a loop ends


def test_graph_order_is_the_same_whatever_order_the_database_gives() -> None:
    from alembic_autocopy.core.model import MigrationHeader as H
    from alembic_autocopy.core.planning import graph_order

    headers = [H("b0"), H("z1", ("b0",)), H("a2", ("z1",)), H("c1", ("b0",)),
               H("x", ("y",)), H("y", ("x",))]  # a cycle too: it must not hang
    for given in (["a2", "c1", "zz"], ["zz", "c1", "a2"], ["c1", "zz", "a2"]):
        assert graph_order(given, headers) == ("a2", "c1", "zz")  # unknown ids last
    chain = [H(f"r{i:05d}", (f"r{i - 1:05d}",) if i else ()) for i in range(5000)]
    assert graph_order(["r04999", "r00003"], chain) == ("r00003", "r04999")  # no recursion
