"""The gesture head on the hand landmark model: its backbone's pooled features -> class probabilities.

hand_landmark_full ends in a backbone whose global average pool (1152 values) feeds all four of
its heads (landmarks, presence, handedness, world landmarks). The gesture head is one more
head on that pool, so one forward pass gives the landmarks and the gesture:

    features = feature_model(hand)                  # crop -> (pooled features, landmarks, presence)
    head = build_head(num_classes, features_train)  # trained on cached features (the backbone stays frozen)
    model = attach_head(hand, head)                 # hand's four outputs, bit-identical, then "gesture"

Training only the head on cached features keeps the shipped landmarks untouched (the gesture
model can replace the cascade's hand stage) and makes training a matter of seconds on a CPU.
"""
from __future__ import annotations

import keras
import numpy as np

from ..convert import layer_groups

GESTURE_OUTPUT = "gesture"
VARIANCE_FLOOR = 1e-2  # of the mean variance of the features that vary: the least spread standardised


def backbone_output_layer(hand: keras.Model) -> str:
    """The name of the layer whose output every head of `hand` reads (the end of its backbone)."""
    backbone = layer_groups(hand)[0]
    if not backbone.is_backbone:
        raise ValueError("the hand model has no layer shared by all its outputs (no backbone)")
    return backbone.layers[-1]


def feature_model(hand: keras.Model) -> keras.Model:
    """crop -> [pooled backbone features, landmarks (63), presence (1)] in one pass."""
    features = hand.get_layer(backbone_output_layer(hand)).output
    if len(features.shape) != 2:
        raise ValueError(f"the hand model's backbone ends in {tuple(features.shape)}, expected pooled (batch, C) features")
    return keras.Model(hand.input, [features, hand.outputs[0], hand.outputs[1]], name="hand_features")


def build_head(num_classes: int, train_features: np.ndarray, hidden: int = 128, dropout: float = 0.3,
               seed: int = 0) -> keras.Model:
    """features -> class probabilities: standardised with the training features' statistics,
    one hidden layer, softmax."""
    if num_classes < 2:
        raise ValueError(f"a gesture head needs at least two classes, got {num_classes}")
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((train_features.shape[1],), name="features")
    mean, variance = train_features.mean(0), train_features.var(0)
    # About half the pooled features are zero on every hand crop; one that is not, on a crop never
    # seen, would be divided by keras's epsilon and swamp the head (|z| ~ 1e6 after 15 training crops).
    live = variance > 0
    floor = VARIANCE_FLOOR * float(variance[live].mean()) if live.any() else 1.0
    x = keras.layers.Normalization(mean=mean, variance=np.maximum(variance, floor), name="gesture_standardise")(inputs)
    x = keras.layers.Dropout(dropout, name="gesture_dropout_in")(x)
    x = keras.layers.Dense(hidden, activation="relu", name="gesture_hidden")(x)
    x = keras.layers.Dropout(dropout, name="gesture_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="gesture_probabilities")(x)
    return keras.Model(inputs, outputs, name="gesture_head")


def attach_head(hand: keras.Model, head: keras.Model) -> keras.Model:
    """One model: the hand model's outputs unchanged (same tensors), then the head's probabilities."""
    features = hand.get_layer(backbone_output_layer(hand)).output
    probabilities = keras.layers.Identity(name=GESTURE_OUTPUT)(head(features))
    return keras.Model(hand.input, [*hand.outputs, probabilities], name=f"{hand.name}_gesture")
