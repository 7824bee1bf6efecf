from ftcore.config.names import OPTIMIZERS, SCHEDULERS


def test_static_names_match_the_installed_transformers():
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    assert set(OPTIMIZERS) == {name.value for name in OptimizerNames}
    assert set(SCHEDULERS) == {name.value for name in SchedulerType}
