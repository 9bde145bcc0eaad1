"""The controller behind the `auto` strategy: a bandit policy over strategies, the premem threshold and the budget
per round, stopping rules, and a decision record per round."""
