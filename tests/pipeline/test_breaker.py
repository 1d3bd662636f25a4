"""The circuit breaker: a teacher whose rows keep failing at the endpoint stops, and the rows that tripped it are
never committed; occasional failures pass through as ordinary rejects."""

from pipeline.breaker import CircuitBreaker


def feed(breaker, rows):
    committed = []
    for item, failure in rows:
        committed += breaker.add(item, failure)
        if breaker.tripped:
            break
    return committed


def test_an_endpoint_that_fails_everything_trips_at_a_full_window_and_commits_none_of_those_rows():
    breaker = CircuitBreaker(window=5, failure_rate=0.9, expected_rows=100)
    committed = feed(breaker, [(i, "endpoint_error") for i in range(100)])
    assert breaker.tripped and committed == []
    assert breaker.describe() == "5 of its last 5 rows failed at the endpoint (endpoint_error 5)"


def test_a_small_run_is_a_full_window_when_every_row_has_finished():
    breaker = CircuitBreaker(window=20, failure_rate=0.9, expected_rows=3)
    feed(breaker, [(i, "endpoint_unreachable") for i in range(3)])
    assert breaker.tripped


def test_scattered_failures_pass_through_once_they_leave_the_window():
    breaker = CircuitBreaker(window=4, failure_rate=0.9, expected_rows=100)
    rows = [(i, "endpoint_error" if i % 3 == 0 else None) for i in range(12)]
    committed = feed(breaker, rows)
    assert not breaker.tripped
    committed += breaker.drain()
    assert sorted(committed) == list(range(12)), "every row is committed exactly once"


def test_healthy_rows_are_committed_at_once_and_failed_ones_only_after_the_window():
    breaker = CircuitBreaker(window=3, failure_rate=1.0, expected_rows=100)
    assert breaker.add("a", "endpoint_error") == []
    assert breaker.add("b", None) == ["b"]
    assert breaker.add("c", None) == ["c"]
    assert breaker.add("d", None) == ["d", "a"]


def test_an_endpoint_that_goes_bad_mid_run_trips_and_holds_back_the_window():
    breaker = CircuitBreaker(window=4, failure_rate=0.75, expected_rows=100)
    committed = feed(breaker, [(i, None) for i in range(10)] + [(i, "endpoint_timeout") for i in range(10, 20)])
    assert breaker.tripped and committed == list(range(10))


def test_no_rate_means_never():
    breaker = CircuitBreaker(window=2, failure_rate=None, expected_rows=10)
    feed(breaker, [(i, "endpoint_error") for i in range(10)])
    assert not breaker.tripped and len(breaker.drain()) == 2
