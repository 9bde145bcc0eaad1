"""The paper's analyses (Kang et al. 2024, sections 3-4): the sweep of training runs (sweep) and the numbers read
from it (results: generalization prediction, tau calibrated on dev, per-example robustness), with the metrics of
`loop.metrics`."""
