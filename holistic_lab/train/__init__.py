"""Fine-tuning the Holistic landmark models (chapter 05): job config, masked losses, freezing and LoRA.

- `modules`: `MODULES`, what each module (face_mesh, hands, pose) trains and its rows of the 543 layout.
- `config`: `FineTuneConfig`, the fine-tuning job API's JSON, validated field by field.
- `losses`: `module_targets`, `landmark_losses`, `masked_mean`, `DEFAULT_LOSS_WEIGHTS`.
- `adapters`: `freeze` by layer group, `add_lora` / `LoraReport`, `merge_lora`.
"""
from .adapters import LoraReport, add_lora, freeze, merge_lora
from .config import CHECKPOINT_MARKER, FineTuneConfig
from .losses import DEFAULT_LOSS_WEIGHTS, landmark_losses, masked_mean, module_targets, named_outputs
from .modules import MODULES, TrainModule, train_module

__all__ = ["CHECKPOINT_MARKER", "DEFAULT_LOSS_WEIGHTS", "FineTuneConfig", "LoraReport", "MODULES", "TrainModule",
           "add_lora", "freeze", "landmark_losses", "masked_mean", "merge_lora", "module_targets", "named_outputs",
           "train_module"]
