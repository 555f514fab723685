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
"""
from .adapters import LoraReport, add_lora, freeze, merge_lora
from .config import CHECKPOINT_MARKER, FineTuneConfig
from .losses import DEFAULT_LOSS_WEIGHTS, landmark_losses, masked_mean, named_outputs
from .modules import MODULES, TrainModule, train_module

__all__ = ["CHECKPOINT_MARKER", "DEFAULT_LOSS_WEIGHTS", "FineTuneConfig", "LoraReport", "MODULES", "TrainModule",
           "add_lora", "freeze", "landmark_losses", "masked_mean", "merge_lora", "named_outputs", "train_module"]
