from ftcore.config.names import OPTIMIZERS, SCHEDULERS, TRACKERS


def test_static_names_match_the_installed_transformers():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    assert set(OPTIMIZERS) == {name.value for name in OptimizerNames}
    assert set(SCHEDULERS) == {name.value for name in SchedulerType}
    assert set(TRACKERS) == set(INTEGRATION_TO_CALLBACK)
