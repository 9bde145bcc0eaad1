"""The paper's analyses (Kang et al. 2024, sections 3-4): generalization prediction, tau calibrated on a dev split,
per-example robustness, and the sweep of training runs they are measured on."""
