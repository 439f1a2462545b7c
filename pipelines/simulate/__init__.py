"""The embedded default data: a synthetic storm observed by a virtual radar network."""

from pipelines.simulate.network import simulate_network

__all__ = ["simulate_network"]
