"""Metrics against hand-computed values and brute-force enumeration."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest

from pacore.eval.metrics import (
    CROSS_CHECK_MARKERS,
    OutcomeCounts,
    Rate,
    accuracy_per_round,
    bootstrap_interval,
    classify_outcome,
    cluster_answers,
    count_markers,
    count_outcomes,
    cross_check_frequency,
    emergent_correctness,
    is_abstention,
    largest_context,
    maj_at_k,
    majority_vote,
    mean_pass_at_k,
    mean_ttc,
    pass_at_1,
    pass_at_k,
    solipsism_rate,
)

# ------------------------------------------------------------------------- pass@1

TINY = {"a": [1.0, 1.0], "b": [0.0, 0.0], "c": [1.0, 0.0], "d": [0.0, 1.0]}


def test_pass_at_1_mean_and_stderr_by_hand() -> None:
    result = pass_at_1(TINY)
    # Per-problem means 1, 0, .5, .5: mean .5, sample variance (.25+.25)/3 = 1/6.
    assert result.mean == pytest.approx(0.5)
    assert result.stderr == pytest.approx(math.sqrt((1 / 6) / 4))
    assert result.n_problems == 4
    assert result.n_runs == 2
    assert result.n_scores == 8
    assert 0.0 <= result.ci_low <= result.mean <= result.ci_high <= 1.0


def test_pass_at_1_is_mean_of_problem_means_not_of_all_scores() -> None:
    result = pass_at_1({"a": [1.0], "b": [0.0, 0.0, 0.0]})
    assert result.mean == pytest.approx(0.5)
    assert result.n_runs == 1
    assert result.n_scores == 4


def test_pass_at_1_soft_scores() -> None:
    assert pass_at_1({"a": [0.25, 0.75], "b": [0.5]}).mean == pytest.approx(0.5)


def test_bootstrap_is_reproducible_with_a_seed_and_order_free() -> None:
    scores = {f"p{i}": [float(i % 3 == 0), float(i % 2 == 0)] for i in range(25)}
    first = pass_at_1(scores, seed=7)
    again = pass_at_1(dict(reversed(list(scores.items()))), seed=7)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    other = pass_at_1(scores, seed=8)
    assert other.mean == first.mean
    assert first.ci_low < first.mean < first.ci_high


def test_bootstrap_interval_roughly_matches_normal_approximation() -> None:
    values = [1.0] * 60 + [0.0] * 40
    low, high = bootstrap_interval(values, n_resamples=4000, seed=1)
    se = math.sqrt(0.6 * 0.4 / 100)
    assert low == pytest.approx(0.6 - 1.96 * se, abs=0.02)
    assert high == pytest.approx(0.6 + 1.96 * se, abs=0.02)


def test_single_problem_and_constant_scores_have_degenerate_intervals() -> None:
    one = pass_at_1({"a": [1.0, 0.0]})
    assert (one.stderr, one.ci_low, one.ci_high) == (0.0, 0.5, 0.5)
    constant = pass_at_1({"a": [1.0], "b": [1.0]})
    assert (constant.stderr, constant.ci_low, constant.ci_high) == (0.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "scores",
    [{}, {"a": []}, {"a": [1.5]}, {"a": [-0.1]}, {"a": [math.nan]}],
)
def test_pass_at_1_rejects_bad_input(scores: dict[str, list[float]]) -> None:
    with pytest.raises(ValueError, match=r"^pass_at_1: (no problems|problem 'a' has)"):
        pass_at_1(scores)


# ------------------------------------------------------------------------- pass@k


def brute_force_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """The fraction of k-subsets of n samples (c correct) containing a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    hits = sum(1 for sub in subsets if any(samples[i] for i in sub))
    return Fraction(hits, len(subsets))


def test_pass_at_k_by_hand() -> None:
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10.
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # k=1 is the plain fraction correct.
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    # n-c < k: every k-subset holds a correct sample.
    assert pass_at_k(5, 3, 3) == 1.0


def test_pass_at_k_matches_enumeration_over_subsets() -> None:
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = float(brute_force_pass_at_k(n, c, k))
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_for_large_n() -> None:
    # C(10000, 5000) overflows a float; the product form does not.
    value = pass_at_k(10_000, 1, 5_000)
    assert value == pytest.approx(0.5)
    exact = 1 - Fraction(math.comb(1000 - 7, 64), math.comb(1000, 64))
    assert pass_at_k(1000, 7, 64) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6), (5.0, 2, 1), (True, 1, 1)],
)
def test_pass_at_k_validates(n: object, c: object, k: object) -> None:
    with pytest.raises(ValueError, match=r"^pass_at_k: (n|c|k) must be"):
        pass_at_k(n, c, k)  # type: ignore[arg-type]


def test_mean_pass_at_k() -> None:
    assert mean_pass_at_k({"a": (5, 2), "b": (5, 0)}, 2) == pytest.approx(0.35)


# ------------------------------------------------------------------ majority vote


def same_number(a: object, b: object) -> bool:
    """A toy equivalence: "1/2" and "0.5" are the same number."""
    return float(Fraction(str(a))) == float(Fraction(str(b)))


def test_majority_vote_clusters_by_equivalence() -> None:
    vote = majority_vote(["0.5", "3", "1/2", "3", "2/4"], same_number)
    assert vote.winner == 0
    assert vote.answer == "0.5"
    assert vote.clusters == ((0, 2, 4), (1, 3))
    assert vote.sizes == (3, 2)
    assert vote.winner_cluster == 0
    assert vote.abstentions == 0


def test_majority_vote_tie_goes_to_earliest_cluster() -> None:
    assert majority_vote(["b", "a", "a", "b"]).answer == "b"
    assert majority_vote(["a", "b", "b", "a"]).answer == "a"
    assert majority_vote(["x", "y", "z"]).winner == 0


def test_abstentions_never_win_unless_all_abstain() -> None:
    vote = majority_vote([None, "", "  ", None, "7"])
    assert (vote.winner, vote.answer, vote.abstentions, vote.sizes) == (4, "7", 4, (1,))
    nobody = majority_vote([None, " "])
    assert (nobody.winner, nobody.answer, nobody.clusters, nobody.abstentions) == (
        None,
        None,
        (),
        2,
    )
    assert nobody.winner_cluster is None
    assert majority_vote([]).winner is None
    assert is_abstention("")
    assert is_abstention(None)
    assert not is_abstention("0")


def test_cluster_compares_with_the_representative_only() -> None:
    calls: list[tuple[object, object]] = []

    def near(a: object, b: object) -> bool:
        calls.append((a, b))
        return abs(int(str(a)) - int(str(b))) <= 1

    # 2 joins 1's cluster; 3 is compared with 1 (the representative), not with 2.
    assert cluster_answers(["1", "2", "3", "1"], near) == [[0, 1, 3], [2]]
    assert ("1", "3") in calls
    assert ("2", "3") not in calls
    # Equal answers are merged without calling `same`.
    assert ("1", "1") not in calls


def test_maj_at_k_uses_the_winners_correctness() -> None:
    samples = [("1/2", True), ("3", False), ("0.5", True), ("3", False), ("3", False)]
    assert maj_at_k(samples, same=same_number) is False
    assert maj_at_k(samples, same=same_number, k=3) is True
    # Tie at k=4: the earliest cluster ("1/2") wins.
    assert maj_at_k(samples, same=same_number, k=4) is True
    assert maj_at_k([(None, None), ("", None)]) is False
    assert maj_at_k([("7", None)]) is None
    with pytest.raises(ValueError, match=r"k must be in 1\.\.5, got 6"):
        maj_at_k(samples, k=6)
    with pytest.raises(ValueError, match="no samples"):
        maj_at_k([])


def test_maj_at_k_with_cluster_ids() -> None:
    assert maj_at_k([(2, False), (1, True), (2, False)]) is False


# ------------------------------------------------------------------ compute, context


def test_mean_ttc_is_mean_over_problems_of_mean_over_runs() -> None:
    assert mean_ttc({"a": [100, 300], "b": [1000]}) == pytest.approx(600.0)
    assert largest_context([10, 400, 30]) == 400
    assert largest_context([]) is None


# ----------------------------------------------------------------------- analyses


def test_accuracy_per_round_pools_messages_and_skips_ungradable() -> None:
    results: list[list[list[bool | None]]] = [
        [[True, False, False, None], [True]],
        [[False, False, True, True], [False]],
        [[True]],
    ]
    rates = accuracy_per_round(results)
    assert rates == (Rate(4, 8), Rate(1, 2))
    assert rates[0].value == pytest.approx(0.5)
    assert accuracy_per_round([[[None]]]) == (Rate(0, 0),)
    assert accuracy_per_round([[[None]]])[0].value is None
    assert accuracy_per_round([]) == ()


def test_emergent_correctness_counts_only_all_wrong_inputs() -> None:
    cases: list[tuple[list[bool | None], bool | None]] = [
        ([False, False], True),  # emergent
        ([False, False, False], False),
        ([False, True], True),  # a correct input: not counted
        ([False, None], True),  # an ungradable input: not counted
        ([], True),  # no inputs: not a synthesis
        ([False], None),  # final ungradable
    ]
    rate = emergent_correctness(cases)
    assert (rate.numerator, rate.denominator) == (1, 2)
    assert rate.value == pytest.approx(0.5)


def test_emergent_correctness_zero_denominator_is_none_not_zero() -> None:
    rate = emergent_correctness([([True, False], True)])
    assert rate == Rate(0, 0)
    assert rate.value is None
    assert rate.to_dict() == {"value": None, "numerator": 0, "denominator": 0}


def test_count_markers_on_crafted_strings() -> None:
    text = (
        "Reference 1 and reference 2 agree; the references differ from Ref 3. "
        "See ref 4, Ref. 5, ref #6, REF 7, Ref12. Cross-referenced twice. "
        "refer to it; refined. 参考答案与参考 2 一致。"
    )
    counts = count_markers(text)
    assert counts == {
        # Reference, reference, references, (Cross-)referenced.
        "reference": 4,
        "参考": 2,
        # Ref 3, Ref. 5, REF 7, Ref12.
        "Ref <n>": 4,
        # ref 4, ref #6.
        "ref <n>": 2,
    }
    assert tuple(counts) == CROSS_CHECK_MARKERS


def test_count_markers_ignores_lookalikes() -> None:
    counts = count_markers("preference, crossreference, prefix 3, refs, Referee 2")
    assert counts == {"reference": 0, "参考": 0, "Ref <n>": 0, "ref <n>": 0}


# Fragments with the markers each holds, by construction: (text, reference, 参考,
# Ref <n>, ref <n>). Joined by separators that are no letters, they keep their counts.
MARKER_FRAGMENTS = [
    ("Reference", 1, 0, 0, 0),
    ("references", 1, 0, 0, 0),
    ("cross-referenced", 1, 0, 0, 0),
    ("REFERENCES", 1, 0, 0, 0),
    ("preference", 0, 0, 0, 0),
    ("crossreference", 0, 0, 0, 0),
    ("Ref 3", 0, 0, 1, 0),
    ("ref. 4", 0, 0, 0, 1),
    ("REF#5", 0, 0, 1, 0),
    ("ref\t#7", 0, 0, 0, 1),
    ("ref\u00a09", 0, 0, 0, 1),
    ("ref\n3", 0, 0, 0, 0),  # a line break is not the space a number follows
    ("Ref12", 0, 0, 1, 0),
    ("refs", 0, 0, 0, 0),
    ("Referee 2", 0, 0, 0, 0),
    ("réference", 0, 0, 0, 0),
    ("参考答案", 0, 1, 0, 0),
    ("参考 ref 2", 0, 1, 0, 1),
    # Letters Python's case-insensitive [a-z] also matches: no marker may follow them.
    ("İreference", 0, 0, 0, 0),  # and lowered, İ is two characters
    ("ſref 3", 0, 0, 0, 0),
    ("\u212aReference", 0, 0, 0, 0),
    ("step step step", 0, 0, 0, 0),
    ("x = 42.", 0, 0, 0, 0),
]


def test_count_markers_on_generated_solutions() -> None:
    """Long texts made of labelled fragments: the counts are the fragments' sums."""
    rng = random.Random(20)
    for _ in range(300):
        picked = rng.choices(MARKER_FRAGMENTS, k=rng.randint(0, 60))
        seps = [rng.choice([" ", ", ", "; ", "\n", " (", ") "]) for _ in picked]
        text = "".join(f"{frag[0]}{sep}" for frag, sep in zip(picked, seps, strict=True))
        counts = [(a, b, c, d) for _, a, b, c, d in picked]
        expected = [sum(row[i] for row in counts) for i in range(4)]
        assert list(count_markers(text).values()) == expected, text


def test_count_markers_is_the_whole_text_scan() -> None:
    """Random text dense in r, e, f and their neighbours: the counts are those of the
    patterns run over the whole text (what `count_markers` skips the scan to find)."""
    from pacore.eval.metrics import _REF_NUMBER, _REFERENCE

    alphabet = "refREFnc ce.#\t\u00a0\n0123abxİıſ\u212a参考é-"
    rng = random.Random(21)
    for _ in range(3000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 80)))
        if rng.random() < 0.3:
            text = text.replace("r", "reference", 1)
        numbered = [m.group(1) for m in _REF_NUMBER.finditer(text)]
        whole = {
            "reference": len(_REFERENCE.findall(text)),
            "参考": text.count("参考"),
            "Ref <n>": numbered.count("R"),
            "ref <n>": numbered.count("r"),
        }
        assert count_markers(text) == whole, text


def test_cross_check_frequency_per_solution() -> None:
    stats = cross_check_frequency(["Reference 1 says 4; ref 2 says 5.", "参考", "nothing"])
    assert stats.n_solutions == 3
    assert stats.totals == {"reference": 1, "参考": 1, "Ref <n>": 0, "ref <n>": 1}
    assert stats.per_solution == pytest.approx(1.0)
    assert stats.solutions_with_marker == 2
    assert stats.per_marker()["参考"] == pytest.approx(1 / 3)
    empty = cross_check_frequency([])
    assert empty.per_solution is None
    assert empty.to_dict()["per_marker"] == dict.fromkeys(CROSS_CHECK_MARKERS)


def test_solipsism_rate() -> None:
    cases: list[tuple[str | None, list[str | None]]] = [
        ("1/2", ["0.5", "3"]),  # matches a reference under equivalence
        ("7", ["3", "4"]),  # matches none: solipsistic
        ("3", ["3"]),
        ("9", [None, ""]),  # no answered reference: left out
        (None, ["3"]),  # abstaining final: left out
        ("8", []),  # no references: left out
    ]
    rate = solipsism_rate(cases, same=same_number)
    assert (rate.numerator, rate.denominator) == (1, 3)
    # By string, "1/2" matches nothing either.
    assert solipsism_rate(cases) == Rate(2, 3)
    assert solipsism_rate([]).value is None


def test_outcomes_keep_infrastructure_failures_apart() -> None:
    outcomes = [
        classify_outcome(True),
        classify_outcome(False),
        classify_outcome(None),
        classify_outcome(True, failed=True),
        classify_outcome(None, failed=True),
        classify_outcome(False),
    ]
    counts = count_outcomes(outcomes)
    assert counts == OutcomeCounts(correct=1, wrong=2, ungradable=1, failed=2)
    assert counts.total == 6
    assert counts.to_dict()["failed"] == 2
    with pytest.raises(ValueError, match="unknown outcome 'lost'"):
        count_outcomes(["lost"])  # type: ignore[list-item]


def test_bootstrap_counts_and_value_by_value_resampling_agree() -> None:
    # Three distinct values take the multinomial path; the same data, each value moved
    # by a different billionth, has 300 distinct values and is resampled value by value.
    values = [0.0] * 120 + [0.5] * 60 + [1.0] * 120
    jittered = [v + i * 1e-9 for i, v in enumerate(values)]
    counts = bootstrap_interval(values, n_resamples=4000, seed=3)
    one_by_one = bootstrap_interval(jittered, n_resamples=4000, seed=3)
    mean = sum(values) / len(values)
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))
    for low, high in (counts, one_by_one):
        assert low == pytest.approx(mean - 1.96 * se, abs=0.01)
        assert high == pytest.approx(mean + 1.96 * se, abs=0.01)
    assert counts == pytest.approx(one_by_one, abs=0.01)


def test_bootstrap_value_by_value_in_blocks_is_reproducible(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pacore.eval.metrics as metrics

    values = [i / 99 for i in range(100)]
    whole = bootstrap_interval(values, n_resamples=500, seed=5)
    assert whole == bootstrap_interval(values, n_resamples=500, seed=5)
    monkeypatch.setattr(metrics, "BOOTSTRAP_BLOCK", 250)  # 2 resamples a block
    low, high = bootstrap_interval(values, n_resamples=500, seed=5)
    assert low < 0.5 < high
    assert (low, high) == pytest.approx(whole, abs=0.02)
