"""Recovery by distillation (holistic_lab.prune.recover): the loss, the loop, its refusals."""
import keras
import numpy as np
import pytest

from holistic_lab.prune import distill, distillation_loss
from holistic_lab.prune.recover import Distiller
from holistic_lab.train.losses import named_outputs

SIZE = 16


def tiny_model(seed: int = 0, width: int = 4) -> keras.Model:
    """A hand_landmark-like two-output model: 63 landmark values and a presence probability."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.Conv2D(width, 3, strides=2, activation="relu", name="conv")(image)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    landmarks = keras.layers.Dense(63, name="Identity")(pooled)
    presence = keras.layers.Dense(1, activation="sigmoid", name="Identity_1")(pooled)
    return keras.Model(image, [landmarks, presence])


def copy_of(model: keras.Model, **kwargs) -> keras.Model:
    twin = tiny_model(**kwargs)
    twin.set_weights(model.get_weights())
    return twin


def crops(count: int = 12, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (count, SIZE, SIZE, 3)).astype(np.float32)


def terms(student, teacher, images, stage="hand_landmark"):
    return {name: float(value) for name, value in distillation_loss(
        named_outputs(student, images), named_outputs(teacher, images), stage).items()}


def perturbed(teacher: keras.Model) -> keras.Model:
    student = copy_of(teacher)
    layer = student.get_layer("Identity")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 0.5, bias + 0.3])
    return student


def test_loss_is_zero_when_the_student_is_the_teacher():
    teacher = tiny_model()
    for stage in ("hand_landmark", None):
        values = terms(copy_of(teacher), teacher, crops(), stage)
        assert set(values) == {"Identity", "Identity_1", "total"}
        assert all(abs(value) < 1e-7 for value in values.values()), values


def test_loss_terms_are_normalised_and_scores_compared_as_probabilities():
    teacher = tiny_model()
    student = perturbed(teacher)
    values = terms(student, teacher, crops())
    assert values["Identity"] > 0 and values["Identity_1"] >= 0
    # multiplying the outputs' scale multiplies the teacher's variance alike: the term does not move
    scaled = distillation_loss({"Identity": named_outputs(student, crops())["Identity"] * 100},
                               {"Identity": named_outputs(teacher, crops())["Identity"] * 100}, "hand_landmark")
    assert float(scaled["Identity"]) == pytest.approx(values["Identity"], rel=1e-4)


def test_distillation_moves_the_student_towards_the_teacher_and_leaves_the_teacher_alone():
    teacher = tiny_model()
    student = perturbed(teacher)
    images = crops(24)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    before = terms(student, teacher, images)
    gap_before = np.abs(student.predict(images, verbose=0)[0] - teacher.predict(images, verbose=0)[0]).mean()
    run = distill(student, teacher, images, epochs=3, batch_size=8, learning_rate=3e-3, progress=False)
    after = terms(run.model, teacher, images)
    gap_after = np.abs(run.model.predict(images, verbose=0)[0] - teacher.predict(images, verbose=0)[0]).mean()
    assert after["total"] < before["total"] and gap_after < gap_before
    assert all(np.array_equal(a, b) for a, b in zip(teacher_weights, teacher.get_weights()))
    assert {"loss", "val_loss", "Identity", "val_Identity_1", "seconds"} <= set(run.history)
    assert 1 <= run.best_epoch <= 3 and len(run.history["seconds"]) == 3


def test_feature_distillation_compares_the_kept_channels():
    teacher = tiny_model(width=4)
    student = tiny_model(seed=3, width=2)   # "pruned": 2 of the 4 conv channels (its head differs too)
    images = crops(4)
    trainer = Distiller(student, teacher, "hand_landmark", ["conv"], {"conv": np.array([1, 3])})
    assert "features" in trainer.terms(images)
    # the student's conv set to the teacher's channels 1 and 3: the feature term is 0
    kernel, bias = teacher.get_layer("conv").get_weights()
    student.get_layer("conv").set_weights([kernel[..., [1, 3]], bias[[1, 3]]])
    assert float(trainer.terms(images)["features"]) < 1e-7
    run = distill(student, teacher, crops(8), epochs=1, batch_size=4, feature_layers=["conv"],
                  kept={"conv": np.array([1, 3])}, progress=False)
    assert "val_features" in run.history


@pytest.mark.parametrize("change, message", [
    (dict(epochs=0), "epochs"),
    (dict(crops=np.zeros((0, SIZE, SIZE, 3), np.float32)), "crops"),
    (dict(crops=np.zeros((4, SIZE + 1, SIZE, 3), np.float32)), "crops"),
    (dict(validation_split=1.0), "validation_split"),
    (dict(feature_layers=["nowhere"]), "feature_layers"),
    (dict(feature_layers=["conv"], kept={"conv": np.array([0, 9])}), "kept"),
])
def test_bad_arguments_are_refused_by_name(change, message):
    teacher = tiny_model()
    arguments = dict(student=copy_of(teacher), teacher=teacher, crops=crops(4), epochs=1, progress=False) | change
    with pytest.raises(ValueError, match=message):
        distill(**arguments)


def test_student_with_other_outputs_is_refused():
    teacher = tiny_model()
    image = keras.Input((SIZE, SIZE, 3))
    other = keras.Model(image, keras.layers.Dense(1, name="score")(keras.layers.Flatten()(image)))
    with pytest.raises(ValueError, match="student"):
        distill(other, teacher, crops(4), epochs=1, progress=False)
    with pytest.raises(ValueError, match="student_outputs"):
        distillation_loss({"score": np.zeros((1, 1))}, {"Identity": np.zeros((1, 63))}, "hand_landmark")
    with pytest.raises(ValueError, match="stage_or_module"):
        distillation_loss({"Identity": np.zeros((1, 63))}, {"Identity": np.zeros((1, 63))}, "elbow")


def test_real_hand_landmark_model_recovers_on_real_crops():
    from holistic_lab.convert import tflite_to_keras
    from holistic_lab.mediapipe_models import model_path
    from holistic_lab.prune import recovery_crops
    from holistic_lab.prune.recover import landmark_model_of

    images = recovery_crops("hand_landmark", 8, every=15, progress=False)
    assert images.shape[1:] == (224, 224, 3) and len(images) >= 4
    teacher = tflite_to_keras(model_path("hand_landmark_full"))
    student = tflite_to_keras(model_path("hand_landmark_full"))
    assert landmark_model_of(teacher) == "hand_landmark_full"   # distill picks its loss without being told
    convolution = student.get_layer("conv2d_6")
    kernel, *rest = convolution.get_weights()
    convolution.set_weights([kernel * 0.5, *rest])
    before = terms(student, teacher, images, "hand_landmark")
    run = distill(student, teacher, images, epochs=2, batch_size=4, progress=False)
    after = terms(run.model, teacher, images, "hand_landmark")
    assert set(before) == {"Identity", "Identity_1", "Identity_2", "Identity_3", "total"}
    # training moves towards the teacher; the validation guard never hands back a worse model
    assert run.history["loss"][-1] < run.history["loss"][0], run.history
    assert after["total"] <= before["total"], (before, after)
    assert {"Identity", "Identity_1", "Identity_2", "Identity_3", "val_loss"} <= set(run.history)


def test_the_teacher_can_be_pruned_and_distilled_again_after_a_run():
    """distill freezes the teacher for its run only: a model pruned from it afterwards still trains."""
    from holistic_lab.prune import channel_graph, prune_model

    teacher = tiny_model()
    images = crops(12)
    distill(perturbed(teacher), teacher, images, epochs=1, batch_size=4, progress=False)
    assert all(layer.trainable for layer in teacher.layers)
    graph = channel_graph(teacher)
    smaller = prune_model(graph, {group.name: list(range(group.size - 1)) for group in graph.prunable})
    assert smaller.trainable_weights
    run = distill(smaller, teacher, images, epochs=1, batch_size=4, progress=False)
    assert len(run.history["loss"]) == 1


def test_recovery_never_ends_worse_than_it_started():
    """A step so large that every epoch is worse than the start leaves the starting weights."""
    teacher = tiny_model()
    student = perturbed(teacher)
    images = crops(12)
    start = [w.copy() for w in student.get_weights()]
    run = distill(student, teacher, images, epochs=2, batch_size=4, learning_rate=0.9, progress=False)
    assert run.history["val_loss_before"][0] <= min(run.history["val_loss"])
    assert run.best_epoch == 0
    assert all(np.array_equal(a, b) for a, b in zip(start, run.model.get_weights()))
