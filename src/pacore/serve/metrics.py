"""The Prometheus metrics of one app, in a registry of its own (never the global one)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pacore.types import Trajectory

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class ServeMetrics:
    """Requests, trajectories, tokens, upstream errors, latency and requests in flight."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "pacore_requests", "chat requests answered, by model and HTTP status",
            ["model", "status"], registry=r,
        )  # fmt: skip
        self.trajectories = Counter(
            "pacore_trajectories", "trajectories sampled, by status", ["status"], registry=r
        )
        self.tokens = Counter(
            "pacore_tokens", "tokens over every trajectory, by kind (prompt, completion)",
            ["kind"], registry=r,
        )  # fmt: skip
        self.upstream_errors = Counter(
            "pacore_upstream_errors", "failed upstream samples and requests, by error type",
            ["type"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "pacore_request_duration_seconds", "time from request to its last byte, by model",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("pacore_requests_in_flight", "chat requests in progress", registry=r)

    def spent(self, trajectories: Iterable[Trajectory]) -> None:
        """Count the trajectories, tokens and failed samples a request spent."""
        prompt = completion = 0
        for t in trajectories:
            completion += t.usage.generated
            prompt += t.usage.prompt_tokens
            self.trajectories.labels(t.status).inc()
            if t.status == "error":  # by the error's type: its text may name a URL
                self.upstream_errors.labels(t.error_type or "Error").inc()
        self.tokens.labels("prompt").inc(prompt)
        self.tokens.labels("completion").inc(completion)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
