"""Fine-tuning the Holistic landmark models (chapter 05), in the order the data flows.

- `modules`: `MODULES`, what each module (face_mesh, hands, pose) trains: crop, outputs, part.
- `data`: a labelled image -> the module's crop as the cascade cuts it, labels in the model's
  units, a degraded copy for the student and the clean one for the teacher; batches.
- `config`: `FineTuneConfig`, the fine-tuning job API's JSON, validated field by field.
- `losses`: `landmark_losses`, `masked_mean`, `DEFAULT_LOSS_WEIGHTS`.
- `adapters`: `freeze` by layer group, `add_lora` / `LoraReport`, `merge_lora`.
- `loop`: `finetune`, the training loop with its callbacks (checkpoint, logs, resume).
- `export`: `export_variant`, a trained model -> a verified float32 `.tflite` in a variant folder.
- `job`: `run_job`, one job from config to variant folder (`holistic-lab finetune`, the job API).
- `evaluate`: the shipped and the fine-tuned model on held-out human labels, clean and degraded.

The single-pass experiment (chapter 06), one network for all 543 points measured against the cascade:
- `single_pass`: the network (pose_landmark_full + face and hand heads), its loss, `fit`, saving.
- `single_pass_data`: the cascade's labels in the pose crop, augmented; `distillation_items`.
- `single_pass_experiment`: `make_single_pass`, label + train + save in one call.
- `single_pass_eval`: `measure_single_pass`, beside the cascade: latency, size, accuracy per part.

Chapter 06's joint model, on the same engine:
- `joint_data`: one labelled image -> the four heads' crops (pose, face, left_hand, right_hand), masks.
- `joint`: `HolisticModel`, the three landmark models as one Keras model with four named heads,
  trained in one `fit` with a loss weight per head; `export_joint` splits it back into a variant.
- `joint_study`: joint training against chapter 05's per-module training, on human labels.
"""
from .config import CHECKPOINT_MARKER, FineTuneConfig
from .modules import DEFAULT_LOSS_WEIGHTS, MODULES, TrainModule, train_module

# the Keras-side names load on first use, so reading and checking a job config needs no TensorFlow
_LAZY = {"LoraReport": "adapters", "add_lora": "adapters", "freeze": "adapters", "merge_lora": "adapters",
         "landmark_losses": "losses", "masked_mean": "losses", "named_outputs": "losses"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CHECKPOINT_MARKER", "DEFAULT_LOSS_WEIGHTS", "FineTuneConfig", "MODULES", "TrainModule", "train_module",
           *_LAZY]
