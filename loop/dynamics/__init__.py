"""Learning dynamics: the ledger's definitions (`ledger`: memorized flag, pre-memorization accuracy), recording them at
epoch checkpoints (`tracking`), and the memorization threshold (`threshold`: every tau rule; `calibration`: choosing
it on dev)."""
