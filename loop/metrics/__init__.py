"""The analyses' metrics, pure functions of stored tables: R² of test accuracy on a predictor and its bootstrap over
runs (prediction), the threshold calibrated on dev (calibration), accuracy by pre-memorization bin (robustness).
Below the engine, which calibrates a curation run's threshold; `loop.analysis` runs the sweep they are read on."""
