"""The latest forecast of a domain as the API serves it: its summary or a map, cached per commit.

Between two forecasts (one every 5 minutes) every client of ``GET /v1/forecasts/{domain}/latest``
asks for the same few answers, and each costs a read of the whole forecast (12 x 512 x 512 values:
~0.25 s on one core) and, for a map, a render (~1 s). Answers are kept per (domain, format, lead)
with the store commit they were made from; a new commit makes them stale. Concurrent requests
for one answer make it once (a lock per domain and format); other domains' in parallel.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from pipelines.forecast.store import Forecast, ForecastStore, summarise
from pipelines.plots import Site

T = TypeVar("T")


def render_png(f: Forecast, step: int, sites: Sequence[Site] = ()) -> bytes:
    """A map of lead step ``step`` (1-based) of a forecast, as PNG bytes."""
    from pipelines.plots import forecast_title, rain_map

    buffer = io.BytesIO()
    rain_map(f.values[step - 1], f.grid, buffer, forecast_title(f, step), sites)
    return buffer.getvalue()


class NoForecasts(LookupError):
    """The domain has no stored forecast."""


class NoSuchLead(ValueError):
    """The forecast has no such lead."""


class LatestForecasts:
    """Answers about each domain's latest forecast in ``store``, made once per store commit.

    ``summary`` and ``png`` raise NoForecasts for a domain without forecasts and NoSuchLead
    for a lead the forecast does not have.
    """

    def __init__(self, store: ForecastStore, sites: Sequence[Site] = ()):
        self.store = store
        self.sites = tuple(sites)
        self._answers: dict[tuple, tuple[str, object]] = {}  # key -> (commit, answer)
        self._locks: dict[tuple, threading.Lock] = {}
        self._guard = threading.Lock()

    def summary(self, domain: str) -> dict[str, object]:
        return self._answer((domain, "json"), lambda f: summarise(f))

    def png(self, domain: str, lead: int | None = None) -> bytes:
        """A map of lead step ``lead`` (1-based; default the last)."""

        def make(f: Forecast) -> bytes:
            n = f.values.shape[0]
            step = n if lead is None else lead
            if not 1 <= step <= n:
                raise NoSuchLead(f"lead {step} beyond the forecast's {n} leads")
            return render_png(f, step, self.sites)

        return self._answer((domain, "png", lead), make)

    def _answer(self, key: tuple, make: Callable[[Forecast], T]) -> T:
        head = self.store.head()
        domain = key[0]
        if domain not in self.store.domains(head):  # before any state is kept for it
            raise NoForecasts(f"no forecasts of domain {domain!r}")
        with self._guard:  # one lock per domain and format: the keys stay few
            lock = self._locks.setdefault(key[:2], threading.Lock())
        with lock:
            cached = self._answers.get(key)
            if cached is not None and cached[0] == head:
                return cached[1]  # type: ignore[return-value]
            answer = make(self.store.forecast(domain, snapshot=head))
            self._answers[key] = (head, answer)
            return answer
