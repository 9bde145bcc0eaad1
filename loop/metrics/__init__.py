"""The analyses' statistics, pure functions of stored tables: R² of test accuracy on a predictor and its bootstrap over
runs (prediction), accuracy by pre-memorization bin (robustness). The threshold calibrated on dev lives with the
rest of the dynamics (`loop.dynamics.calibration`)."""
