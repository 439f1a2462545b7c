"""The embedded default data: a synthetic storm observed by a virtual radar network."""

from pipelines.simulate.network import simulate_network
from pipelines.simulate.truth import truth_frames

__all__ = ["simulate_network", "truth_frames"]
