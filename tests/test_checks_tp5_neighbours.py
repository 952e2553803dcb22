"""TP5 Exercise 6, "excluding the query itself": the hidden probes tell the readings apart (issue 11).

Dropping the first result of ``topk(k + 1)`` agrees with "leave out the query's own index" only
when the query is strictly its own best match; the probes hold duplicates (ties with the query)
and an inner-product matrix (another item outranks the query), and ties are judged by value.
"""

from __future__ import annotations

import torch

from autograder.checks import tp5_cifar10_clustering as ref


def by_index(similarity, queries, k=5):  # the solution
    rows = similarity[queries].clone()
    rows[torch.arange(len(queries)), torch.as_tensor(queries)] = -float("inf")
    return rows.topk(k, dim=1).indices


def masked_diagonal(similarity, queries, k=5):
    s = similarity.clone()
    s.fill_diagonal_(-float("inf"))
    return s[queries].topk(k, dim=1).indices


def filtered(similarity, queries, k=5):
    return [[i for i in similarity[q].topk(k + 1).indices.tolist() if i != q][:k] for q in queries]


def sorted_list(similarity, queries, k=5):
    rows = []
    for q in queries:
        order = torch.argsort(similarity[q], descending=True, stable=True).tolist()
        rows.append([i for i in order if i != q][:k])
    return rows


def drop_first(similarity, queries, k=5):  # assumes the query is its own best match
    return similarity[queries].topk(k + 1, dim=1).indices[:, 1:]


def problems(function):
    found = []
    for similarity, queries, k in ref.nearest_neighbour_probes():
        original = similarity.clone()
        found.append(
            ref.neighbours_problem(function(similarity, queries, k=k), original, queries, k)
        )
    return [problem for problem in found if problem]


def test_correct_readings_pass():
    for function in (by_index, masked_diagonal, filtered, sorted_list):
        assert problems(function) == [], function.__name__


def test_dropping_the_first_result_fails_where_the_query_is_not_its_own_best_match():
    found = problems(drop_first)
    assert any("query 1 is among its own neighbours" in problem for problem in found), found
    # ... while the old probe (no ties, cosine) could not tell it from the right reading
    plain = [p for p in ref.nearest_neighbour_probes()[:3]]
    assert all(ref.neighbours_problem(drop_first(s, q, k), s, q, k) is None for s, q, k in plain)


def test_probes_really_hold_ties():
    duplicates = ref.nearest_neighbour_probes()[3][0]
    assert torch.equal(duplicates, duplicates.T)
    assert duplicates[0, 7] == duplicates[0, 0] == 1.0
    assert duplicates[2, 0] == duplicates[2, 7]
    inner = ref.nearest_neighbour_probes()[5][0]
    assert inner[1, 3] > inner[1, 1]


def test_wrong_answers_are_named():
    s, queries, k = ref.nearest_neighbour_probes()[1]
    assert "expected shape" in ref.neighbours_problem(torch.zeros(1, 1), s, queries, k)
    wrong = by_index(s, queries, k).flip(1)
    assert "wrong neighbours" in ref.neighbours_problem(wrong, s, queries, k)
