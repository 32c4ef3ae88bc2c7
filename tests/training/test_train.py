from __future__ import annotations

import numpy as np
import pytest

from mpqc.api import qat
from mpqc.errors import MpqcError, OptionError
from mpqc.training import QatConfig


@pytest.fixture(scope="module")
def w2a8(default_model):
    return qat(default_model, "w2a8", config=QatConfig(epochs=2))


def test_qat_beats_ptq_where_it_should(w2a8):
    assert w2a8.qat_eval.measure == "top1" and w2a8.qat_eval.split == "test"
    assert w2a8.qat_eval.quality > w2a8.ptq_eval.quality + 0.2
    assert w2a8.necessity > 0.2


def test_w8a8_needs_no_qat(default_model):
    result = qat(default_model, "w8a8", config=QatConfig(epochs=1))
    assert abs(result.necessity) <= 0.01


def test_label_free_distillation_trains(default_model, tmp_path):
    from scipy.ndimage import zoom

    from mpqc.data import digits_split

    images, _ = digits_split("train")
    x = zoom(images, (1, 2, 2), order=1, grid_mode=True, mode="nearest")[:, None].astype(np.float32)
    path = tmp_path / "unlabelled.npz"
    np.savez(path, input=x)
    result = qat(default_model, "w2a8", str(path), config=QatConfig(epochs=1))
    assert result.loss == "distill" and result.qat_eval.top1 is None and result.qat_eval.measure == "agreement"
    assert result.qat_eval.quality > result.ptq_eval.quality


def test_labels_required_when_asked(default_model, tmp_path):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, input=np.zeros((8, 1, 16, 16), np.float32))
    with pytest.raises(MpqcError, match="labels"):
        qat(default_model, "w4a8", str(path), config=QatConfig(epochs=1, loss="labels"))


def test_scheme_mismatch(default_model):
    with pytest.raises(MpqcError, match="unknown layer"):
        qat(default_model, {"layers": {"nope": "w4a8"}}, config=QatConfig(epochs=1))
    for bad in ({"epochs": -1}, {"lr": float("nan")}, {"batch_size": 0}, {"loss": "magic"}):
        with pytest.raises(OptionError):
            QatConfig(**bad)


@pytest.mark.parametrize("minimum,frozen", [(256, True), (0, False)])
def test_few_samples_train_scales_not_the_weights(default_model, minimum, frozen):
    """48 kit samples: weight steps flipped enough levels to wreck a pretrained model; with
    fewer training samples than `weights_min_samples` the float weights stay as they are and
    only scales (so the levels they round to) and float parameters move."""
    import onnx_ir as ir
    import torch

    from mpqc.emit import emit
    from mpqc.scheme import Scheme
    from mpqc.training.graph import TrainableGraph
    from mpqc.training.train import train_scheme
    from mpqc.workload import Workload

    work = Workload.build(default_model)
    scheme = Scheme.parse("w4a8", work.prepared.analysis.layer_names)
    recipe = work.resolve_recipe((8,), (4,))
    weights = {
        name: value.const_value.numpy()
        for name, value in work.prepared.model.graph.initializers.items()
        if value.const_value is not None and value.const_value.dtype == ir.DataType.FLOAT
    }
    start = TrainableGraph(emit(work.prepared, scheme, work.calibration, recipe).model, weights)
    train = work.splits.train.take(48)
    config = QatConfig(epochs=2, batch_size=8, weights_min_samples=minimum)
    teacher = [o[:48] for o in work.reference("train")]
    outcome = train_scheme(work.prepared, scheme, work.calibration, recipe, train, work.float_runner(), config, teacher)
    assert outcome.weights_frozen is frozen and outcome.steps == 12
    trained = outcome.module
    quantized = [key for key in trained.quantizers if key in trained.params]
    assert quantized
    same = all(torch.equal(trained.params[key], start.params[key]) for key in quantized)
    assert same is frozen
    assert not all(torch.equal(trained.quantizers[k].scale, start.quantizers[k].scale) for k in quantized)


@pytest.fixture(scope="module")
def w2a8_run(default_model):
    """`run(epochs, resume=None, keep=False, minimum=0)`: QAT of the digits CNN at w2a8 on 96
    samples (weights train unless `minimum` > 96), validated, seed 3; and `payload(outcome)`,
    its QDQ model's bytes."""
    import onnx_ir as ir

    from mpqc.scheme import Scheme
    from mpqc.training.train import Validation, train_scheme
    from mpqc.workload import Workload

    work = Workload.build(default_model)
    scheme = Scheme.parse("w2a8", work.prepared.analysis.layer_names)
    recipe = work.resolve_recipe((8,), (2,))
    train = work.splits.train.take(96)
    teacher = [o[:96] for o in work.reference("train")]
    validation = Validation(work.splits.validation, work.reference("validation"), work.quality)

    def run(epochs, resume=None, keep=False, minimum=0):
        config = QatConfig(epochs=epochs, batch_size=16, weights_min_samples=minimum, seed=3)
        return train_scheme(
            work.prepared,
            scheme,
            work.calibration,
            recipe,
            train,
            work.float_runner(),
            config,
            teacher,
            validation=validation,
            resume=resume,
            keep_state=keep,
        )

    def payload(outcome) -> bytes:
        return ir.serde.serialize_model(outcome.model).SerializeToString()

    return run, payload


def test_a_longer_run_replays_a_shorter_one_with_the_same_seed(w2a8_run):
    """What the short-qat policy relies on: a run's first epochs do not depend on how many
    follow, so its full run only adds to the short one (the best state can only improve)."""
    run, _ = w2a8_run
    short, full = run(1), run(2)
    assert full.history[: len(short.history)] == short.history and len(full.history) > len(short.history)
    assert full.losses[0] == short.losses[0]


def test_going_on_from_a_shorter_run_gives_the_longer_runs_bytes(w2a8_run):
    """The short-qat policy's full run goes on from where the short one stopped instead of
    replaying it; that is only honest if the result is the one a run from scratch gives."""
    import dataclasses

    from mpqc.training.train import TrainingState

    run, payload = w2a8_run
    short = run(1, keep=True)
    assert short.state is not None and short.state.epochs == 1 and short.state.steps == short.steps == 6
    state = TrainingState.from_bytes(short.state.to_bytes())  # as a job hands it over
    full, resumed = run(2), run(2, state)
    assert payload(resumed) == payload(full) != payload(short)
    assert (resumed.history, resumed.losses, resumed.steps, resumed.best_step) == (
        full.history,
        full.losses,
        full.steps,
        full.best_step,
    )
    # a short run that stopped early is where the longer run stops too: nothing more trains
    stopped = run(2, dataclasses.replace(state, stopped_early=True))
    assert stopped.steps == short.steps and stopped.stopped_early and payload(stopped) == payload(short)
    with pytest.raises(ValueError, match="cannot go on"):
        run(2, dataclasses.replace(state, seed=4))
    with pytest.raises(ValueError, match="cannot go on"):
        run(1, dataclasses.replace(state, epochs=2))


def test_a_state_keeps_only_what_training_moves(w2a8_run):
    """With the weights frozen (few samples, as on the kit) a state holds scales and float
    parameters only, and going on from it still gives the longer run's bytes."""
    from mpqc.training.train import TrainingState

    run, payload = w2a8_run
    trained = run(1, keep=True).state
    frozen = run(1, keep=True, minimum=1000).state
    assert trained is not None and frozen is not None
    weights = set(trained.module) - set(frozen.module)
    assert weights and all(k.split(".")[0] == "params" for k in weights)
    assert len(frozen.to_bytes()) < len(trained.to_bytes()) / 2
    resumed = run(2, TrainingState.from_bytes(frozen.to_bytes()), minimum=1000)
    assert payload(resumed) == payload(run(2, minimum=1000))
