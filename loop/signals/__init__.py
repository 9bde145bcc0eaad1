"""Signals: the per-candidate numbers strategies read, each computed by a registered provider at its scope
(static text, the base model once, or each round's model) and stored in the run store."""
