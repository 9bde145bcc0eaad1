"""The rule a pretraining snapshot of the embedded base must meet (`loop.embedded.pretrain.meets_rule`), on
hand-made metrics: partial competence that falls with the number of steps, without a cliff."""

from loop.embedded.pretrain import meets_rule


def metrics(accuracy, by):
    return {"accuracy": accuracy, "accuracy_by_steps": {str(k): v for k, v in zip(range(2, 6), by)}}


def test_graded_partial_competence_meets_the_rule():
    assert meets_rule(metrics(0.5, [0.8, 0.6, 0.4, 0.2]))
    assert meets_rule(metrics(0.35, [0.6, 0.65, 0.3, 0.05]))  # a rise within sampling noise (0.05), the floor met


def test_each_clause_can_fail_it():
    assert not meets_rule(metrics(0.7, [0.9, 0.8, 0.6, 0.4]))  # too competent overall
    assert not meets_rule(metrics(0.3, [0.5, 0.3, 0.2, 0.1]))  # too little
    assert not meets_rule(metrics(0.5, [0.55, 0.5, 0.5, 0.45]))  # not graded: falls by less than 0.2
    assert not meets_rule(metrics(0.5, [0.8, 0.5, 0.62, 0.3]))  # rises by 0.12 from 3 to 4 steps
    assert not meets_rule(metrics(0.5, [0.9, 0.85, 0.4, 0.3]))  # a cliff: drops by 0.45 in one step
    assert not meets_rule(metrics(0.5, [0.8, 0.6, 0.3, 0.02]))  # 5-step problems all but never solved
    assert not meets_rule({"accuracy": 0.5, "accuracy_by_steps": {"2": 0.8, "3": 0.6, "5": 0.2}})  # 4 missing
